"""Host-side (numpy) image preprocessing and training augmentation.

Every random choice for a training example is a pure function of ``(seed, position)``,
where ``position = step * global_batch_size + row`` is the example's place in the
global stream of training examples. The augmented batch therefore depends neither on
the number of processes or devices nor on whether the run was resumed: a counter-based
hash (splitmix64 [1]) turns ``(seed, position, draw)`` into uniforms, vectorised over
the batch, with no generator state to save.

* ``crop_flip``: pad by ``padding`` pixels (with the value that black takes after
  normalization), take a random crop of the original size, flip left-right with
  probability 1/2 — the CIFAR recipe of [2].
* ``inception_crop``: a random crop covering 8%-100% of the area with aspect ratio in
  [3/4, 4/3], resized to ``size x size``, then the flip — the ImageNet recipe of [3].
  Evaluation resizes the shorter side to ``size / 0.875`` and takes the central crop.
* ``mixup`` [4]: each example is mixed with a partner example drawn from the training
  source by its own uniforms, ``x = lam x_i + (1 - lam) x_j`` with
  ``lam ~ Beta(alpha, alpha)`` (sampled by inverse CDF), and so are the targets: the
  batch carries ``soft_label = lam y_i + (1 - lam) y_j`` ``[B, K]`` (one-hot or the
  source's own soft labels), which every categorical loss trains on; ``label`` stays
  the example's own class.

References:
  [1] Steele, Lea, Flood. Fast Splittable Pseudorandom Number Generators. OOPSLA 2014.
      https://doi.org/10.1145/2660193.2660195
  [2] He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
      https://arxiv.org/abs/1512.03385
  [3] Szegedy et al. Going Deeper with Convolutions. CVPR 2015.
      https://arxiv.org/abs/1409.4842
  [4] Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization.
      ICLR 2018. https://arxiv.org/abs/1710.09412
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import PIL.Image
from scipy import special

from relbench.errors import UsageError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser [1]: a bijective mix of 64-bit integers (wrapping)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, positions: np.ndarray, num_draws: int) -> np.ndarray:
    """``[N, num_draws]`` uniforms in [0, 1), a pure function of ``(seed, position, draw)``."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.asarray(seed & 0xFFFFFFFFFFFFFFFF, np.uint64))
        rows = _splitmix64(key ^ np.asarray(positions, np.uint64))  # [N]
        bits = _splitmix64(rows[:, None] + np.arange(num_draws, dtype=np.uint64))
    return (bits >> np.uint64(11)).astype(np.float64) / float(2**53)  # [N, num_draws]


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 ``[..., C]`` -> float32 ``(x / 255 - mean) / std``."""
    scale = np.float32(255.0) * np.asarray(std, np.float32)
    return (images.astype(np.float32) - 255.0 * np.asarray(mean, np.float32)) / scale


def crop_flip(images: np.ndarray, u: np.ndarray, padding: int, pad_value: np.ndarray) -> np.ndarray:
    """Pad, random crop back to the input size, random left-right flip.

    Args:
      images: ``[N, H, W, C]``.
      u: ``[N, 3]`` uniforms: row offset, column offset, flip.
      padding: pixels added on every side.
      pad_value: ``[C]`` value of the padding.
    """
    n, h, w, c = images.shape
    padded = np.empty((n, h + 2 * padding, w + 2 * padding, c), images.dtype)
    padded[...] = pad_value
    padded[:, padding : padding + h, padding : padding + w] = images
    top = np.floor(u[:, 0] * (2 * padding + 1)).astype(np.int64)  # [N] in [0, 2p]
    left = np.floor(u[:, 1] * (2 * padding + 1)).astype(np.int64)
    out = np.empty_like(images)
    for i in range(n):  # per-row slices copy ~1.7x faster than one fancy-index gather
        crop = padded[i, top[i] : top[i] + h, left[i] : left[i] + w]
        out[i] = crop[:, ::-1] if u[i, 2] < 0.5 else crop
    return out


def resize_center_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """Evaluation view of a variable-size uint8 image: shorter side to ``size /
    crop_fraction`` (bicubic), then the central ``size x size`` crop."""
    h, w = image.shape[:2]
    short = round(size / crop_fraction)
    scale = short / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    resized = np.asarray(
        PIL.Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).resize(
            (new_w, new_h), PIL.Image.BICUBIC
        )
    ).reshape(new_h, new_w, image.shape[-1])
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def inception_crop(
    image: np.ndarray,
    u: np.ndarray,
    size: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """A random-area, random-aspect crop resized to ``size x size``, flipped if ``u[4] < 1/2``.

    ``u`` holds 5 uniforms: area, log-aspect, top, left, flip. A crop that does not fit
    is shrunk to the image (the single-try variant of [3]'s rejection sampling).
    """
    h, w = image.shape[:2]
    area = h * w * (area_range[0] + u[0] * (area_range[1] - area_range[0]))
    log_lo, log_hi = np.log(aspect_range[0]), np.log(aspect_range[1])
    aspect = np.exp(log_lo + u[1] * (log_hi - log_lo))
    crop_w = int(min(w, max(1, round(np.sqrt(area * aspect)))))
    crop_h = int(min(h, max(1, round(np.sqrt(area / aspect)))))
    top = int(u[2] * (h - crop_h + 1))
    left = int(u[3] * (w - crop_w + 1))
    crop = image[top : top + crop_h, left : left + crop_w]
    pil = PIL.Image.fromarray(crop.squeeze(-1) if crop.shape[-1] == 1 else crop)
    out = np.asarray(pil.resize((size, size), PIL.Image.BICUBIC)).reshape(size, size, -1)
    return out[:, ::-1] if u[4] < 0.5 else out


def beta_quantile(alpha: float, u: np.ndarray) -> np.ndarray:
    """Inverse CDF of Beta(alpha, alpha): maps uniforms to Beta draws."""
    return special.betaincinv(alpha, alpha, u)


@dataclasses.dataclass(frozen=True)
class ImageAugment:
    """Training augmentation ``(batch, seed, positions) -> batch`` for one image dataset.

    Attributes:
      kind: ``"none"``, ``"crop_flip"`` or ``"inception_crop"``.
      mean, std: per-channel normalization (applied by the source for ``crop_flip`` and
        ``none``; here, after cropping, for ``inception_crop``, whose inputs are raw).
      padding: ``crop_flip`` padding in pixels.
      size: ``inception_crop`` output side.
      mixup_alpha: Beta parameter of mixup; 0 turns mixup off.
      partner_source: where mixup partners are read from (the training source).
      num_classes: K, for mixup's one-hot targets.
    """

    kind: str
    mean: Sequence[float]
    std: Sequence[float]
    padding: int = 4
    size: int = 224
    mixup_alpha: float = 0.0
    partner_source: object | None = None
    num_classes: int = 0

    def __post_init__(self):
        if self.kind not in ("none", "crop_flip", "inception_crop"):
            raise UsageError(
                f"unknown augmentation '{self.kind}'; choose none, crop_flip or inception_crop"
            )
        if self.mixup_alpha < 0:
            raise UsageError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")

    def _targets(self, batch: dict) -> np.ndarray:
        if "soft_label" in batch:
            return batch["soft_label"].astype(np.float32)
        return np.eye(self.num_classes, dtype=np.float32)[batch["label"]]  # [B, K]

    def _augment_inputs(self, inputs: np.ndarray, u: np.ndarray) -> np.ndarray:
        if self.kind == "crop_flip":
            black = normalize(np.zeros((1, 1), np.uint8), self.mean, self.std)[0]  # [C]
            return crop_flip(inputs, u[:, :3], self.padding, black)
        if self.kind == "inception_crop":
            crops = np.stack(
                [inception_crop(im, row, self.size) for im, row in zip(inputs, u, strict=True)]
            )
            return normalize(crops, self.mean, self.std)
        return inputs

    def __call__(self, batch: dict, seed: int, positions: np.ndarray) -> dict:
        u = uniforms(seed, positions, 8)  # [N, 8]: 5 for cropping, 3 for mixup
        out = dict(batch, input=self._augment_inputs(batch["input"], u))
        if self.mixup_alpha == 0:
            return out
        n = len(self.partner_source)
        partners = np.minimum((u[:, 5] * n).astype(np.int64), n - 1)
        partner = self.partner_source.read(partners)
        # The partner's own augmentation draws come from its mirrored position.
        partner_u = uniforms(seed, ~np.asarray(positions, np.uint64), 8)
        partner_inputs = self._augment_inputs(partner["input"], partner_u)
        lam = beta_quantile(self.mixup_alpha, u[:, 6]).astype(np.float32)  # [N]
        shape = (-1,) + (1,) * (out["input"].ndim - 1)
        out["input"] = lam.reshape(shape) * out["input"] + (1 - lam.reshape(shape)) * partner_inputs
        mixed = lam[:, None] * self._targets(batch) + (1 - lam[:, None]) * self._targets(partner)
        out["soft_label"] = mixed  # [N, K]
        return out
