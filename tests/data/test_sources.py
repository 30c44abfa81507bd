"""Batches as pure functions of the step: determinism, epochs, process shards, eval
padding, label checks, and the TFDS path on mock data."""

import numpy as np
import pytest

from relbench import data
from relbench.data.sources import ArraySource, TrainBatches, eval_batches
from relbench.data.tfds import mock_tfds
from relbench.errors import UsageError


def array_source(n, num_classes=3):
    return ArraySource(
        {"input": np.arange(n, dtype=np.float32)[:, None], "label": np.arange(n) % num_classes}
    )


def test_each_epoch_visits_every_example_once_in_a_seeded_order():
    batches = TrainBatches(array_source(12), global_batch_size=4, seed=7, num_classes=3)
    epoch0 = np.concatenate([batches.global_indices(s) for s in range(3)])
    epoch1 = np.concatenate([batches.global_indices(s) for s in range(3, 6)])
    assert sorted(epoch0) == sorted(epoch1) == list(range(12))
    assert not np.array_equal(epoch0, epoch1)
    again = TrainBatches(array_source(12), global_batch_size=4, seed=7, num_classes=3)
    np.testing.assert_array_equal(again.global_indices(4), batches.global_indices(4))
    other = TrainBatches(array_source(12), global_batch_size=4, seed=8, num_classes=3)
    assert not np.array_equal(other.global_indices(0), batches.global_indices(0))


def test_batches_straddle_epochs():
    batches = TrainBatches(array_source(10), global_batch_size=4, seed=0, num_classes=3)
    first_two_epochs = np.concatenate([batches.global_indices(s) for s in range(5)])
    assert sorted(first_two_epochs[:10]) == list(range(10))
    assert sorted(first_two_epochs[10:]) == list(range(10))


@pytest.mark.parametrize("processes", [2, 4])
def test_process_shards_concatenate_to_the_global_batch(processes):
    source = array_source(50)
    whole = TrainBatches(source, 8, seed=1, num_classes=3)
    for step in (0, 6, 13):
        parts = [
            TrainBatches(source, 8, 1, 3, process_index=p, process_count=processes)(step)["input"]
            for p in range(processes)
        ]
        np.testing.assert_array_equal(np.concatenate(parts), whole(step)["input"])


def test_global_batch_must_divide_over_processes():
    with pytest.raises(UsageError, match="not divisible by the 3 processes"):
        TrainBatches(array_source(10), 8, 0, 3, process_index=0, process_count=3)


def test_iterator_state_resumes_mid_stream():
    batches = TrainBatches(array_source(30), 4, seed=3, num_classes=3)
    iterator = data.train_iterator(batches, num_steps=20)
    for _ in range(7):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator)["input"] for _ in range(3)]
    fresh = data.train_iterator(batches, num_steps=20)
    fresh.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(fresh)["input"], want)


@pytest.mark.parametrize("processes", [1, 2])
def test_eval_batches_count_every_example_once(processes):
    source = array_source(23)
    seen = []
    for p in range(processes):
        for batch in eval_batches(source, 8, 3, p, processes):
            assert len(batch["mask"]) == 8 // processes
            seen.extend(batch["input"][batch["mask"] == 1, 0].tolist())
    assert sorted(seen) == list(range(23))


def test_labels_out_of_range_name_the_problem():
    bad = ArraySource({"input": np.zeros((4, 1), np.float32), "label": np.array([0, 1, 5, 2])})
    with pytest.raises(UsageError, match=r"label 5 in training batch 0 is outside \[0, 3\)"):
        TrainBatches(bad, 4, 0, num_classes=3)(0)
    with pytest.raises(UsageError, match=r"label 5 .* outside \[0, 3\)"):
        list(eval_batches(bad, 4, 3))


def test_embedded_datasets_have_fixed_splits():
    digits = data.make("digits")
    assert digits.num_classes == 10 and digits.input_shape == (8, 8, 1)
    sizes = [len(digits.train), *(len(s.source) for s in digits.eval_sets.values())]
    assert sizes[:3] == [1258, 180, 359] and sum(sizes[:3]) == 1797
    again = data.make("digits")
    np.testing.assert_array_equal(
        digits.train.read(np.arange(5))["input"], again.train.read(np.arange(5))["input"]
    )
    moons = data.make("two_moons")
    far = moons.eval_sets["ood_far"].source.read(np.arange(len(moons.eval_sets["ood_far"].source)))
    train = moons.train.read(np.arange(len(moons.train)))["input"]
    distances = np.linalg.norm(far["input"][:, None] - train[None], axis=-1).min(1)
    assert distances.min() > 1.0  # every OOD point is far from every training point


def test_tfds_source_reads_mock_mnist():
    with mock_tfds(num_examples=20):  # tfds.testing.mock_data, batch reads fixed
        dataset = data.make("tfds", tfds_name="mnist")
        batch = TrainBatches(dataset.train, 8, 0, dataset.num_classes)(1)
    assert dataset.input_shape == (28, 28, 1) and dataset.num_classes == 10
    assert batch["input"].shape == (8, 28, 28, 1) and batch["input"].dtype == np.float32
    assert 0.0 <= batch["input"].min() and batch["input"].max() <= 1.0


def test_tfds_dataset_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(UsageError, match="not prepared in .*tfds build mnist"):
        data.make("tfds", tfds_name="mnist", data_dir=str(tmp_path))
