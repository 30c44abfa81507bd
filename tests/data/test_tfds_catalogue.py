"""The TFDS catalogue on tfds.testing.mock_data: normalization against the raw records,
evaluation/shift/OOD sets, clear errors, and the grain pipeline's determinism,
topology independence and mid-epoch resume with augmentation on."""

import numpy as np
import pytest

from relbench import data
from relbench.data.sources import TrainBatches, train_iterator
from relbench.data.tfds import PRESETS, corruption_names
from relbench.errors import UsageError
from relbench.train import evaluation

N = 24  # mock examples per split


@pytest.fixture(scope="module")
def cifar10():
    return data.make("cifar10", mock_num_examples=N)


def test_catalogue_is_registered():
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "imagenet2012"):
        assert name in data.DATASETS.names() and name in PRESETS
    assert "clinc_oos" in data.DATASETS.names()


def test_sources_normalize_the_raw_records(cifar10):
    source = cifar10.eval_sets["test"].source
    batch = source.read(np.array([3, 0, 5]))
    raw = np.stack([np.asarray(source.records[i]["image"]) for i in (3, 0, 5)])
    preset = PRESETS["cifar10"]
    np.testing.assert_allclose(
        batch["input"],
        (raw / 255.0 - np.array(preset.mean)) / np.array(preset.std),
        rtol=1e-5,
        atol=1e-6,
    )
    labels = [source.records[i]["label"] for i in (3, 0, 5)]
    np.testing.assert_array_equal(batch["label"], labels)
    assert cifar10.input_shape == (32, 32, 3) and cifar10.num_classes == 10


def test_eval_shift_and_ood_sets():
    ds = data.make(
        "cifar10", validation_percent=10, ood={"svhn": "svhn_cropped:test"}, mock_num_examples=4
    )
    # CIFAR-10-C is the dataset's corruption benchmark, read by the shift suite only.
    assert len(ds.corrupted.names) == 19 == len(corruption_names("cifar10_corrupted"))
    assert "frosted_glass_blur" in ds.corrupted.names and "jpeg" in ds.corrupted.names
    frost = ds.corrupted.read("frost", 5)
    assert not frost.is_ood and frost.source.read(np.arange(2))["input"].shape == (2, 32, 32, 3)
    settings = evaluation.EvaluationSettings(shift_suite="cifar10_c", corruptions=("all",))
    sets = evaluation.evaluation_sets(ds, settings)
    corrupted = [n for n in sets if n.startswith("cifar10_c/")]
    assert len(corrupted) == 19 * 5
    assert not any(sets[n].is_ood for n in ["test", "validation", *corrupted])
    assert ds.eval_sets["svhn"].is_ood
    assert data.make("cifar100", mock_num_examples=2).corrupted is None


def test_bad_catalogue_requests_fail_with_one_clear_line():
    ds = data.make("cifar10", mock_num_examples=2)
    with pytest.raises(UsageError, match="unknown corruption 'rain'.*choose 'all' or some of"):
        evaluation.evaluation_sets(
            ds, evaluation.EvaluationSettings(shift_suite="c", corruptions=("rain",))
        )
    with pytest.raises(UsageError, match="severity 6 is not one of"):
        evaluation.evaluation_sets(
            ds,
            evaluation.EvaluationSettings(shift_suite="c", corruptions=("fog",), severities=(6,)),
        )
    cifar100 = data.make("cifar100", mock_num_examples=2)
    with pytest.raises(UsageError, match="unknown corruption 'frost'"):  # no benchmark
        evaluation.evaluation_sets(
            cifar100, evaluation.EvaluationSettings(shift_suite="c", corruptions=("frost",))
        )
    with pytest.raises(UsageError, match=r"OOD set 'digits'.*\(28, 28, 1\).*same shape"):
        data.make("cifar10", ood={"digits": "mnist:test"}, mock_num_examples=2)
    with pytest.raises(UsageError, match="validation_percent needs an unsliced train_split"):
        data.make("cifar10", train_split="train[:50%]", validation_percent=10, mock_num_examples=2)


def test_imagenet_trains_on_inception_crops_and_evaluates_central_crops():
    ds = data.make("imagenet2012", image_size=16, mock_num_examples=4)
    assert ds.input_shape == (16, 16, 3) and ds.num_classes == 1000
    raw = ds.train.read(np.arange(2))["input"]
    assert raw.dtype == object and {im.ndim for im in raw} == {3}  # variable sizes
    batch = TrainBatches(ds.train, 4, 0, 1000, augment=ds.train_augment)(0)
    assert batch["input"].shape == (4, 16, 16, 3) and batch["input"].dtype == np.float32
    assert ds.eval_sets["test"].source.read(np.arange(3))["input"].shape == (3, 16, 16, 3)


def batches(ds, seed, process_index=0, process_count=1, batch=8):
    return TrainBatches(
        ds.train, batch, seed, ds.num_classes, process_index, process_count, ds.train_augment
    )


def test_augmented_batches_are_deterministic_per_seed(cifar10):
    a, b, c = batches(cifar10, 1)(5), batches(cifar10, 1)(5), batches(cifar10, 2)(5)
    np.testing.assert_array_equal(a["input"], b["input"])
    assert not np.array_equal(a["input"], c["input"])
    unaugmented = TrainBatches(cifar10.train, 8, 1, 10)(5)
    np.testing.assert_array_equal(a["label"], unaugmented["label"])
    assert not np.array_equal(a["input"], unaugmented["input"])


def test_augmented_batches_do_not_depend_on_the_process_count(cifar10):
    whole = batches(cifar10, 3)(4)
    parts = [batches(cifar10, 3, p, 4)(4) for p in range(4)]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))


def test_grain_pipeline_resumes_mid_epoch_from_its_saved_state(cifar10):
    steps = 9  # 3 steps per epoch of 24 examples: stop inside epoch 1, run into epoch 2
    reference = [b["input"] for b in train_iterator(batches(cifar10, 0), steps)]
    first = train_iterator(batches(cifar10, 0), steps)
    head = [next(first)["input"] for _ in range(4)]
    state = first.get_state()
    resumed = train_iterator(batches(cifar10, 0), steps)
    resumed.set_state(state)
    tail = [b["input"] for b in resumed]
    assert len(head) + len(tail) == steps
    for got, expected in zip(head + tail, reference, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_in_memory_training_split_reads_what_the_records_hold(cifar10):
    in_memory = data.make("cifar10", in_memory=True, mock_num_examples=N)
    rows = np.array([5, 0, 23, 5])
    expected, got = cifar10.train.read(rows), in_memory.train.read(rows)
    assert got["input"].dtype == np.float32 and len(in_memory.train) == N
    np.testing.assert_array_equal(got["input"], expected["input"])
    np.testing.assert_array_equal(got["label"], expected["label"])


def test_in_memory_needs_fixed_size_images():
    with pytest.raises(UsageError, match="in_memory holds fixed-size images only"):
        data.make("imagenet2012", in_memory=True, mock_num_examples=2)
