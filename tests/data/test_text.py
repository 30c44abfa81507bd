"""CLINC150 reading: tokenization, vocabulary order, padding, OOD labels, clear errors."""

import json

import numpy as np
import pytest

from relbench import data
from relbench.data import text
from relbench.errors import UsageError


def test_vocabulary_orders_by_count_then_alphabet():
    vocabulary = text.build_vocabulary(["b a c", "B, a!", "d a"], vocab_size=5)
    assert vocabulary == {"a": 2, "b": 3, "c": 4}  # 'd' ties 'c' and is cut


def test_encode_pads_truncates_and_marks_unknown_words():
    ids = text.encode(["a b zzz", "b b b b b"], {"a": 2, "b": 3}, max_length=4)
    np.testing.assert_array_equal(ids, [[2, 3, text.UNKNOWN, text.PAD], [3, 3, 3, 3]])


def test_clinc_reads_the_authors_file(tmp_path):
    raw = {
        "train": [
            ["set an alarm", "alarm"],
            ["play some jazz", "play_music"],
            ["alarm now", "alarm"],
        ],
        "val": [["wake me up", "alarm"]],
        "test": [["play jazz", "play_music"], ["set alarm", "alarm"]],
        "oos_train": [["what is love", "oos"]],
        "oos_val": [["how tall is it", "oos"]],
        "oos_test": [["tell me a joke", "oos"], ["who won", "oos"]],
    }
    path = tmp_path / "data_full.json"
    path.write_text(json.dumps(raw))
    ds = data.make("clinc_oos", data_file=str(path), max_length=3)
    assert ds.num_classes == 2 and ds.input_shape == (3,)
    test = ds.eval_sets["test"].source.read(np.arange(2))
    np.testing.assert_array_equal(test["label"], [1, 0])  # intents sorted: alarm, play_music
    # Train counts: alarm 2, then an, jazz, now, play, set, some (1 each, alphabetical).
    np.testing.assert_array_equal(test["input"][0], [6, 4, text.PAD])  # play jazz
    ood = ds.eval_sets["ood"]
    assert ood.is_ood and (ood.source.read(np.arange(2))["label"] == -1).all()


def test_missing_clinc_file_says_where_to_get_it(tmp_path):
    with pytest.raises(UsageError, match="not found; download data_full.json from https://"):
        data.make("clinc_oos", data_file=str(tmp_path / "nope.json"))
