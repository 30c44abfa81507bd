"""Corruptions: deterministic for a seed, in range and dtype, monotone in severity."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from relbench.data import ArraySource
from relbench.data import corruptions as c
from relbench.errors import UsageError

DIGITS = (load_digits().images[:64] / 16.0)[..., None].astype(np.float32)  # [64, 8, 8, 1]
INDICES = np.arange(64)


@pytest.mark.parametrize("name", c.NAMES)
def test_severity_is_monotone_in_distance(name):
    distance = [
        np.abs(c.corrupt(DIGITS, INDICES, name, s, seed=0) - DIGITS).mean() for s in c.SEVERITIES
    ]
    assert distance[0] > 0
    assert np.all(np.diff(distance) > 0), distance


@pytest.mark.parametrize("name", c.NAMES)
def test_dtype_and_range_are_kept(name):
    as_uint8 = np.round(DIGITS * 255).astype(np.uint8)
    colour = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    for images in (DIGITS, DIGITS.astype(np.float64), as_uint8, colour):
        out = c.corrupt(images, np.arange(len(images)), name, 5, seed=0)
        assert out.dtype == images.dtype and out.shape == images.shape
        top = 255 if images.dtype == np.uint8 else 1.0
        assert out.min() >= 0 and out.max() <= top


@pytest.mark.parametrize(
    "name", ["gaussian_noise", "shot_noise", "impulse_noise", "rotation", "translation"]
)
def test_deterministic_for_a_seed(name):
    first = c.corrupt(DIGITS, INDICES, name, 3, seed=7)
    np.testing.assert_array_equal(first, c.corrupt(DIGITS, INDICES, name, 3, seed=7))
    assert not np.array_equal(first, c.corrupt(DIGITS, INDICES, name, 3, seed=8))


@pytest.mark.parametrize("name", ["gaussian_noise", "rotation"])
def test_an_example_gets_the_same_corruption_in_any_batch(name):
    whole = c.corrupt(DIGITS, INDICES, name, 3, seed=7)
    parts = [c.corrupt(DIGITS[a:b], INDICES[a:b], name, 3, seed=7) for a, b in ((0, 5), (5, 64))]
    # Same random draws; only float rounding of differently vectorised code may differ.
    np.testing.assert_allclose(whole, np.concatenate(parts), atol=1e-6)


def test_suite_names_sets_and_reads_corrupted_images():
    source = ArraySource({"input": DIGITS, "label": np.arange(64) % 10})
    suite = c.corruption_suite(source, "digits_c", ["contrast", "jpeg"], (1, 5), seed=0)
    assert sorted(suite) == [
        "digits_c/contrast/1",
        "digits_c/contrast/5",
        "digits_c/jpeg/1",
        "digits_c/jpeg/5",
    ]
    batch = suite["digits_c/contrast/5"].source.read(np.array([3, 4]))
    np.testing.assert_array_equal(batch["label"], [3, 4])
    np.testing.assert_allclose(batch["input"], c.corrupt(DIGITS[3:5], [3, 4], "contrast", 5, 0))
    assert c.parse_shift_set_name("digits_c/jpeg/5") == ("digits_c", "jpeg", 5)
    assert c.parse_shift_set_name("ood_noise") is None


def test_contrast_and_brightness_closed_forms():
    mean = DIGITS[0].mean()
    out = c.corrupt(DIGITS[:1], [0], "contrast", 2, seed=0)
    np.testing.assert_allclose(out[0], (DIGITS[0] - mean) * 0.5 + mean, atol=1e-6)
    out = c.corrupt(DIGITS[:1], [0], "brightness", 1, seed=0)
    np.testing.assert_allclose(out[0], np.clip(DIGITS[0] + 0.1, 0, 1), atol=1e-6)


def test_bad_names_and_shapes_are_usage_errors():
    with pytest.raises(UsageError, match="unknown corruption 'fog'"):
        c.corrupt(DIGITS, INDICES, "fog", 1, 0)
    with pytest.raises(UsageError, match="severity 6"):
        c.corrupt(DIGITS, INDICES, "jpeg", 6, 0)
    with pytest.raises(UsageError, match="image datasets"):
        c.corrupt(np.zeros((4, 2), np.float32), np.arange(4), "jpeg", 1, 0)
