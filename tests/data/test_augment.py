"""Host augmentation: counter-based randomness against the splitmix64 reference,
crops and flips against naive per-row loops, mixup against its definition."""

import jax
import numpy as np
import optax
import pytest
from scipy import stats

from relbench.data import augment
from relbench.data.sources import ArraySource
from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL
from relbench.methods.method import likelihood_loss


def test_splitmix64_matches_the_reference_generator():
    # SplitMix64 seeded with 0 first returns 0xE220A8397B1DCDAF (Steele et al. 2014;
    # also the first output of java.util.SplittableRandom(0).nextLong()).
    assert int(augment._splitmix64(np.zeros(1, np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_uniforms_are_a_pure_function_of_seed_and_position():
    positions = np.arange(40, 72)
    whole = augment.uniforms(7, positions, 5)
    # Any split of the rows (processes, resumed runs) draws the same numbers.
    halves = np.concatenate(
        [augment.uniforms(7, positions[:13], 5), augment.uniforms(7, positions[13:], 5)]
    )
    np.testing.assert_array_equal(whole, halves)
    assert whole.shape == (32, 5) and (whole >= 0).all() and (whole < 1).all()
    assert not np.array_equal(whole, augment.uniforms(8, positions, 5))
    assert len(np.unique(whole)) == whole.size


def test_uniforms_are_uniform():
    u = augment.uniforms(0, np.arange(4000), 2).ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def naive_crop_flip(images, u, padding, pad_value):
    out = []
    for image, (a, b, c) in zip(images, u, strict=True):
        h, w, _ = image.shape
        padded = np.stack(
            [
                np.pad(image[..., ch], padding, constant_values=pad_value[ch])
                for ch in range(image.shape[-1])
            ],
            axis=-1,
        )
        top, left = int(a * (2 * padding + 1)), int(b * (2 * padding + 1))
        crop = padded[top : top + h, left : left + w]
        out.append(crop[:, ::-1] if c < 0.5 else crop)
    return np.stack(out)


def test_crop_flip_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(9, 6, 5, 3)).astype(np.float32)
    u = augment.uniforms(3, np.arange(9), 3)
    u[0] = [0.0, 0.999, 0.9]  # extreme offsets, no flip
    pad_value = np.array([-1.0, -2.0, -3.0], np.float32)
    np.testing.assert_array_equal(
        augment.crop_flip(images, u, 2, pad_value), naive_crop_flip(images, u, 2, pad_value)
    )


def test_normalize_maps_black_to_minus_mean_over_std():
    black = augment.normalize(np.zeros((1, 3), np.uint8), (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    np.testing.assert_allclose(black[0], [-1.0, -1.0, 0.0])


def test_inception_crop_of_the_full_area_at_aspect_one_is_the_image():
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    full = [1.0, 0.5, 0.0, 0.0, 0.9]  # area 100%, log-aspect midpoint (1), no flip
    np.testing.assert_array_equal(augment.inception_crop(image, np.array(full), 12), image)
    flipped = augment.inception_crop(image, np.array([*full[:4], 0.1]), 12)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    assert augment.inception_crop(image, np.array([0.0, 0.0, 0.3, 0.7, 0.9]), 5).shape == (5, 5, 3)


def test_resize_center_crop_keeps_the_centre():
    image = np.zeros((40, 80, 1), np.uint8)
    image[:, 20:60] = 255  # the central square of the wide image is white
    out = augment.resize_center_crop(image, 28, crop_fraction=0.7)  # short side -> 40
    assert out.shape == (28, 28, 1) and out.min() == 255


def test_mixup_mixes_inputs_and_targets_with_the_same_weight():
    inputs = np.random.default_rng(0).normal(size=(20, 4, 4, 1)).astype(np.float32)
    labels = np.arange(20, dtype=np.int32) % 5
    source = ArraySource({"input": inputs, "label": labels})
    aug = augment.ImageAugment(
        "none", (0.0,), (1.0,), mixup_alpha=0.4, partner_source=source, num_classes=5
    )
    positions = np.arange(100, 108)
    rows = np.arange(8)
    out = aug(source.read(rows), seed=5, positions=positions)
    u = augment.uniforms(5, positions, 8)
    partners = (u[:, 5] * 20).astype(int)
    lam = stats.beta(0.4, 0.4).ppf(u[:, 6])
    one_hot = np.eye(5)
    expected_targets = (
        lam[:, None] * one_hot[labels[rows]] + (1 - lam[:, None]) * one_hot[labels[partners]]
    )
    np.testing.assert_allclose(out["soft_label"], expected_targets, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["label"], labels[rows])
    lam4 = lam[:, None, None, None]
    expected = lam4 * inputs[rows] + (1 - lam4) * inputs[partners]
    np.testing.assert_allclose(out["input"], expected, rtol=1e-5, atol=1e-6)


def test_mixup_loss_is_the_weighted_sum_of_the_two_cross_entropies():
    logits = jax.random.normal(jax.random.key(0), (1, 6, 4))
    labels, partners = np.array([0, 1, 2, 3, 0, 1]), np.array([3, 3, 0, 1, 1, 1])
    lam = np.linspace(0.0, 1.0, 6).astype(np.float32)
    one_hot = np.eye(4, dtype=np.float32)
    batch = {
        "input": logits[0],
        "label": labels,
        "soft_label": lam[:, None] * one_hot[labels] + (1 - lam[:, None]) * one_hot[partners],
    }
    apply_fn = lambda variables, x, **kwargs: ((x[None], {}), {})  # noqa: E731
    loss_fn = likelihood_loss(CATEGORICAL, ())
    loss, _ = loss_fn(apply_fn, {}, batch, {}, step=0, num_train_examples=6)
    ce = lambda y: optax.softmax_cross_entropy_with_integer_labels(logits[0], y)  # noqa: E731
    expected = np.mean(lam * ce(labels) + (1 - lam) * ce(partners))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_bad_augmentation_settings_fail_clearly():
    with pytest.raises(UsageError, match="unknown augmentation 'flip'"):
        augment.ImageAugment("flip", (0.0,), (1.0,))
    with pytest.raises(UsageError, match="mixup_alpha must be >= 0"):
        augment.ImageAugment("none", (0.0,), (1.0,), mixup_alpha=-1.0)
