"""Image corruptions at five severities (the ImageNet-C / CIFAR-10-C family), in JAX.

Any image dataset gets a shift suite from its test set: ``corruption_suite`` wraps the
source so that every ``(corruption, severity)`` pair is one evaluation set named
``"{suite}/{corruption}/{severity}"`` (e.g. ``"digits_c/gaussian_noise/3"``). The
images are corrupted when read, batch by batch, so nothing is stored.

Conventions:

* Images are ``[B, H, W, C]``; float images are in ``[0, 1]``, ``uint8`` images in
  ``[0, 255]``. The output has the input's dtype and value range (clipped).
* Deterministic: example ``i`` of a suite with seed ``s`` is corrupted with the key
  ``fold_in(fold_in(key(s), crc32(corruption)), i)`` — whatever the batch it is read in.
  The key does not depend on the severity, so the random draws are shared across
  severities and a stronger severity moves the same pixels further.
* Spatial parameters are in pixels at 32 x 32 and scale with ``min(H, W) / 32`` for
  larger images; at most 32 pixels they are used as they are, so that 8 x 8 images get
  visible blur. Contrast and Gaussian blur follow CIFAR-10-C [2]; Gaussian, shot and
  impulse noise, brightness and JPEG quality follow ImageNet-C [1] (CIFAR-10-C's are
  too weak for tiny images); defocus radius, pixelation sizes, rotation and translation
  are chosen so that severity 5 is strong on 8 x 8 images.
* Severity is monotone in the mean absolute distance from the clean images on the
  embedded digits and on random images (tested). Pixelation of smooth images at nearly
  equal sizes can alias, so that corruption is monotone in its size, not always in
  distance.

Corruptions (``x`` in [0, 1], ``s`` the severity's parameter, ``z`` standard normal):

* ``gaussian_noise``: ``x + s z``;
* ``shot_noise``: ``Poisson(s x) / s`` (photon noise with ``s`` photons at full scale);
* ``impulse_noise``: a fraction ``s`` of the pixels set to 0 or 1 (salt and pepper);
* ``gaussian_blur``: convolution with a Gaussian of standard deviation ``s`` pixels;
* ``defocus_blur``: convolution with an anti-aliased disk of radius ``s`` pixels;
* ``contrast``: ``(x - mean(x)) s + mean(x)``;
* ``brightness``: ``x + s`` (the HSV value shift of ImageNet-C, for grey images);
* ``pixelate``: area-downsampling to ``max(2, round(s H)) x max(2, round(s W))``, then
  nearest-neighbour upsampling;
* ``jpeg``: 8 x 8 block DCT per channel, quantised with the standard JPEG luminance
  table at quality ``s`` (IJG scaling), then inverted (JPEG-like: no chroma subsampling
  or entropy coding);
* ``rotation``: rotation by ``s`` degrees about the centre, direction random per
  example (bilinear, edges extended);
* ``translation``: a shift by ``s min(H, W)`` pixels in a random direction per example.

References:
  [1] Hendrycks, Dietterich. Benchmarking Neural Network Robustness to Common
      Corruptions and Perturbations (ImageNet-C). ICLR 2019. https://arxiv.org/abs/1903.12261
  [2] The same paper's CIFAR-10-C parameters:
      https://github.com/hendrycks/robustness/blob/master/ImageNet-C/create_c/make_cifar_c.py
  [3] Wallace. The JPEG Still Picture Compression Standard. 1991 (quantisation tables).
      https://doi.org/10.1109/30.125072
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from relbench.data.sources import EvalSet, Source
from relbench.errors import UsageError

SEVERITIES = (1, 2, 3, 4, 5)


def _spatial_scale(image: jax.Array) -> float:
    return max(1.0, min(image.shape[0], image.shape[1]) / 32.0)


def _reflect_pad(image: jax.Array, radius: int) -> jax.Array:
    mode = "reflect" if min(image.shape[:2]) > radius else "edge"
    return jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode=mode)


def _convolve(image: jax.Array, weight: Callable[[jax.Array, jax.Array], jax.Array], radius):
    """Normalised 2-D filter with weights ``weight(dy, dx)`` over a square window."""
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = weight(offsets[:, None], offsets[None, :])  # [2R+1, 2R+1]
    w = w / jnp.sum(w)
    channels = image.shape[-1]
    kernel = jnp.tile(w[:, :, None, None], (1, 1, 1, channels))  # HWIO, one per channel
    padded = _reflect_pad(image, radius)[None]  # [H, W, C] -> [1, H+2R, W+2R, C]
    out = jax.lax.conv_general_dilated(
        padded,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )
    return out[0]


def gaussian_noise(image, key, sigma):
    return image + sigma * jax.random.normal(key, image.shape)


def shot_noise(image, key, photons):
    return jax.random.poisson(key, image * photons, image.shape).astype(image.dtype) / photons


def impulse_noise(image, key, amount):
    hit_key, salt_key = jax.random.split(key)
    hit = jax.random.uniform(hit_key, image.shape) < amount
    salt = jax.random.uniform(salt_key, image.shape) < 0.5
    return jnp.where(hit, salt.astype(image.dtype), image)


def gaussian_blur(image, key, sigma):
    del key
    sigma = sigma * _spatial_scale(image)
    radius = math.ceil(3 * GAUSSIAN_BLUR_SIGMAS[-1] * _spatial_scale(image))
    return _convolve(image, lambda dy, dx: jnp.exp(-(dy**2 + dx**2) / (2 * sigma**2)), radius)


def defocus_blur(image, key, radius):
    del key
    radius = radius * _spatial_scale(image)
    window = math.ceil(DEFOCUS_RADII[-1] * _spatial_scale(image)) + 1
    disk = lambda dy, dx: jnp.clip(radius + 0.5 - jnp.sqrt(dy**2 + dx**2), 0.0, 1.0)  # noqa: E731
    return _convolve(image, disk, window)


def contrast(image, key, factor):
    del key
    mean = jnp.mean(image)
    return (image - mean) * factor + mean


def brightness(image, key, shift):
    del key
    return image + shift


def pixelate(image, key, fraction):
    del key
    h, w, c = image.shape
    small = (max(2, round(fraction * h)), max(2, round(fraction * w)), c)
    down = jax.image.resize(image, small, "linear", antialias=True)
    return jax.image.resize(down, image.shape, "nearest")


_JPEG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)  # orthonormal DCT-II: D @ D.T = I


def jpeg(image, key, quality):
    del key
    h, w, c = image.shape
    ph, pw = -h % 8, -w % 8
    padded = jnp.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") * 255.0 - 128.0
    # [H', W', C] -> [H'/8, 8, W'/8, 8, C] -> [H'/8, W'/8, C, 8, 8]
    blocks = padded.reshape((h + ph) // 8, 8, (w + pw) // 8, 8, c).transpose(0, 2, 4, 1, 3)
    scale = jnp.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
    table = jnp.clip(jnp.floor((_JPEG_LUMINANCE * scale + 50.0) / 100.0), 1.0, 255.0)
    d = jnp.asarray(_dct_matrix())
    coefficients = d @ blocks @ d.T
    restored = d.T @ (jnp.round(coefficients / table) * table) @ d
    # [H'/8, W'/8, C, 8, 8] -> [H', W', C]
    restored = restored.transpose(0, 3, 1, 4, 2).reshape(h + ph, w + pw, c)
    return (restored[:h, :w] + 128.0) / 255.0


def _warp(image, matrix, offset):
    """Samples ``image`` at ``matrix @ (p - centre) + centre + offset`` (bilinear)."""
    h, w, c = image.shape
    centre = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0])
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)  # [H, W, 2]
    source = (grid - centre) @ matrix.T + centre + offset
    coordinates = [source[..., 0], source[..., 1]]
    return jnp.stack(
        [
            jax.scipy.ndimage.map_coordinates(image[..., k], coordinates, order=1, mode="nearest")
            for k in range(c)
        ],
        axis=-1,
    )


def rotation(image, key, degrees):
    sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
    angle = sign * jnp.deg2rad(degrees)
    matrix = jnp.array([[jnp.cos(angle), -jnp.sin(angle)], [jnp.sin(angle), jnp.cos(angle)]])
    return _warp(image, matrix, jnp.zeros(2))


def translation(image, key, fraction):
    angle = jax.random.uniform(key, (), maxval=2 * jnp.pi)
    distance = fraction * min(image.shape[0], image.shape[1])
    offset = distance * jnp.array([jnp.sin(angle), jnp.cos(angle)])
    return _warp(image, jnp.eye(2), offset)


GAUSSIAN_BLUR_SIGMAS = (0.4, 0.6, 0.7, 0.8, 1.0)
DEFOCUS_RADII = (0.75, 1.0, 1.25, 1.5, 2.0)


@dataclasses.dataclass(frozen=True)
class Corruption:
    """``fn(image [H, W, C] in [0, 1], key, parameter)`` and its five parameters.

    ``static``: the parameter changes array shapes (pixelate), so each severity compiles
    its own function.
    """

    fn: Callable[[jax.Array, jax.Array, float], jax.Array]
    parameters: tuple[float, ...]
    static: bool = False


CORRUPTIONS: Mapping[str, Corruption] = {
    "gaussian_noise": Corruption(gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38)),
    "shot_noise": Corruption(shot_noise, (60.0, 25.0, 12.0, 5.0, 3.0)),
    "impulse_noise": Corruption(impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27)),
    "gaussian_blur": Corruption(gaussian_blur, GAUSSIAN_BLUR_SIGMAS),
    "defocus_blur": Corruption(defocus_blur, DEFOCUS_RADII),
    "contrast": Corruption(contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "brightness": Corruption(brightness, (0.1, 0.2, 0.3, 0.4, 0.5)),
    "pixelate": Corruption(pixelate, (0.875, 0.75, 0.5, 0.375, 0.25), static=True),
    "jpeg": Corruption(jpeg, (30.0, 20.0, 15.0, 10.0, 7.0)),
    "rotation": Corruption(rotation, (5.0, 10.0, 15.0, 20.0, 30.0)),
    "translation": Corruption(translation, (0.05, 0.1, 0.15, 0.2, 0.25)),
}
NAMES = tuple(CORRUPTIONS)


def _check(name: str, severity: int) -> Corruption:
    if name not in CORRUPTIONS:
        raise UsageError(f"unknown corruption '{name}'; choose from: {', '.join(NAMES)}")
    if severity not in SEVERITIES:
        raise UsageError(f"corruption severity {severity} is not one of {SEVERITIES}")
    return CORRUPTIONS[name]


@functools.cache
def _batched(name: str, static_parameter: float | None):
    fn = CORRUPTIONS[name].fn

    def run(images, keys, parameter):
        parameter = parameter if static_parameter is None else static_parameter
        out = jax.vmap(fn, in_axes=(0, 0, None))(images, keys, parameter)
        return jnp.clip(out, 0.0, 1.0)

    return jax.jit(run)


@jax.jit
def _fold_in_each(base: jax.Array, indices: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, indices)


def example_keys(seed: int, name: str, indices: np.ndarray) -> jax.Array:
    """One key per example index, independent of the batch and of the severity."""
    base = jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))
    return _fold_in_each(base, jnp.asarray(indices))


def corrupt(
    images: np.ndarray, indices: np.ndarray, name: str, severity: int, seed: int
) -> np.ndarray:
    """Corrupts ``[B, H, W, C]`` images (examples ``indices`` of their dataset)."""
    corruption = _check(name, severity)
    images = np.asarray(images)
    if images.ndim != 4:
        raise UsageError(
            f"corruptions need [B, H, W, C] images, got shape {images.shape}; "
            "use them on image datasets only"
        )
    is_uint8 = images.dtype == np.uint8
    x = images.astype(np.float32) / (255.0 if is_uint8 else 1.0)
    parameter = corruption.parameters[severity - 1]
    run = _batched(name, parameter if corruption.static else None)
    out = np.asarray(run(x, example_keys(seed, name, indices), parameter))
    if is_uint8:
        return np.round(out * 255.0).astype(np.uint8)
    return out.astype(images.dtype)


@dataclasses.dataclass(frozen=True)
class CorruptedSource:
    """A source whose images are corrupted when read (labels unchanged)."""

    source: Source
    corruption: str
    severity: int
    seed: int

    def __post_init__(self):
        _check(self.corruption, self.severity)

    def __len__(self) -> int:
        return len(self.source)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        batch = dict(self.source.read(indices))
        batch["input"] = corrupt(batch["input"], indices, self.corruption, self.severity, self.seed)
        return batch


def shift_set_name(suite: str, corruption: str, severity: int) -> str:
    return f"{suite}/{corruption}/{severity}"


def parse_shift_set_name(name: str) -> tuple[str, str, int] | None:
    """``"digits_c/gaussian_noise/3"`` -> ``("digits_c", "gaussian_noise", 3)``; else None.

    The corruption may be native or a benchmark's (``cifar10_c/frost/3``)."""
    parts = name.split("/")
    if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) not in SEVERITIES:
        return None
    return parts[0], parts[1], int(parts[2])


def corruption_suite(
    source: Source,
    suite: str,
    corruptions: Sequence[str] = NAMES,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
) -> dict[str, EvalSet]:
    """Every ``(corruption, severity)`` of ``source`` as a named evaluation set."""
    return {
        shift_set_name(suite, name, severity): EvalSet(
            CorruptedSource(source, name, severity, seed)
        )
        for name in corruptions
        for severity in severities
    }
