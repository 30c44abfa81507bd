"""The user's own files as datasets (arrays, table, image_folder): what they read, how
they split and standardize, and one error line for each kind of bad input."""

import json

import numpy as np
import PIL.Image
import pyarrow as pa
import pytest
from pyarrow import csv, parquet

from relbench import data
from relbench.data import files, image_folders
from relbench.errors import UsageError


def _read_all(source):
    return source.read(np.arange(len(source)))


def test_arrays_split_by_fractions_is_fixed_by_split_seed(tmp_path):
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(100) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    a = data.make("arrays", path=str(tmp_path / "d.npz"), fractions=(0.6, 0.2, 0.2))
    b = data.make("arrays", path=str(tmp_path / "d.npz"), fractions=(0.6, 0.2, 0.2))
    c = data.make("arrays", path=str(tmp_path / "d.npz"), fractions=(0.6, 0.2, 0.2), split_seed=1)
    rows = {n: _read_all(s.source)["input"][:, 0] for n, s in a.eval_sets.items()}
    train = _read_all(a.train)["input"][:, 0]
    assert (len(train), len(rows["validation"]), len(rows["test"])) == (60, 20, 20)
    every = np.sort(np.concatenate([train, rows["validation"], rows["test"]]))
    np.testing.assert_array_equal(every, np.arange(100))  # disjoint and complete
    np.testing.assert_array_equal(train, _read_all(b.train)["input"][:, 0])
    assert not np.array_equal(train, _read_all(c.train)["input"][:, 0])
    assert a.num_classes == 4 and a.input_shape == (3,)


def test_arrays_from_npy_directories_with_ood_and_standardization(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 50), ("test", 20), ("far", 10)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "images.npy", rng.normal(3.0, 2.0, (n, 2, 2)))
        np.save(tmp_path / name / "classes.npy", rng.integers(0, 3, n))
    dataset = data.make(
        "arrays",
        splits={"train": str(tmp_path / "train"), "test": str(tmp_path / "test")},
        ood={"far": str(tmp_path / "far")},
        input_key="images",
        label_key="classes",
        standardize=True,
    )
    train = _read_all(dataset.train)["input"]
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-5)
    raw = np.load(tmp_path / "train" / "images.npy")
    test_raw = np.load(tmp_path / "test" / "images.npy")
    expected = (test_raw - raw.mean(0)) / raw.std(0)  # the training statistics
    np.testing.assert_allclose(
        _read_all(dataset.eval_sets["test"].source)["input"], expected, atol=1e-5
    )
    assert dataset.eval_sets["far"].is_ood
    assert (_read_all(dataset.eval_sets["far"].source)["label"] == -1).all()


def test_table_regression_standardizes_with_training_statistics(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 3, 200), rng.normal(-2, 0.5, 200)
    columns = {"a": a, "b": b, "note": np.arange(200), "y": 2 * a - b + 10}
    parquet.write_table(pa.table(columns), tmp_path / "t.parquet")
    dataset = data.make(
        "table", path=str(tmp_path / "t.parquet"), target="y", features=("a", "b"),
        task="regression",
    )  # fmt: skip
    train = _read_all(dataset.train)
    assert dataset.task == "regression" and dataset.num_classes == 1
    assert train["input"].shape == (180, 2) and train["label"].shape == (180, 1)
    np.testing.assert_allclose(train["input"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train["label"].std(), 1.0, atol=1e-5)
    assert list(dataset.eval_sets) == ["test"] and len(dataset.eval_sets["test"].source) == 20


def test_table_string_classes_in_sorted_order(tmp_path):
    kinds = np.array(["setosa", "virginica", "versicolor"] * 20)
    columns = {"length": np.arange(60.0), "kind": kinds}
    csv.write_csv(pa.table(columns), tmp_path / "t.csv")
    dataset = data.make("table", path=str(tmp_path / "t.csv"), target="kind", standardize=False)
    train = _read_all(dataset.train)
    names = np.array(["setosa", "versicolor", "virginica"])
    rows = train["input"][:, 0].astype(int)  # the length is the row number
    np.testing.assert_array_equal(names[train["label"]], kinds[rows])
    assert dataset.num_classes == 3


def _png(path, size, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((*size, 3), value, np.uint8)
    pixels[0, 0] = (255 - value, 0, value)
    PIL.Image.fromarray(pixels).save(path)


def _class_folder(root, sizes=((6, 6),), per_class=5):
    for label, value in enumerate((20, 120, 220)):
        for i in range(per_class):
            size = sizes[i % len(sizes)]
            _png(root / f"class_{label}" / f"{i}.png", size, value)


def test_image_folder_decodes_resizes_and_stores_training_statistics(tmp_path):
    _class_folder(tmp_path / "images", sizes=((6, 6), (9, 12)))
    dataset = data.make(
        "image_folder", path=str(tmp_path / "images"), image_size=4, fractions=(0.6, 0.0, 0.4)
    )
    assert dataset.input_shape == (4, 4, 3) and dataset.num_classes == 3
    train = dataset.train
    raw = np.stack([train.decode(i) for i in range(len(train))]) / 255.0
    stored = json.loads((tmp_path / "images" / image_folders.STATISTICS_FILE).read_text())
    (stats,) = stored.values()
    np.testing.assert_allclose(stats["mean"], raw.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], raw.std((0, 1, 2)), rtol=1e-6)
    batch = train.read(np.arange(len(train)))
    np.testing.assert_allclose(batch["input"].mean((0, 1, 2)), 0.0, atol=1e-5)
    assert batch["input"].shape == (9, 4, 4, 3) and batch["input"].dtype == np.float32
    # Read back, not recomputed: a changed file would be a new digest, not a new mean.
    (tmp_path / "images" / image_folders.STATISTICS_FILE).write_text(
        json.dumps({key: {"mean": [0.5] * 3, "std": [0.25] * 3} for key in stored})
    )
    again = data.make(
        "image_folder", path=str(tmp_path / "images"), image_size=4, fractions=(0.6, 0.0, 0.4)
    )
    assert tuple(again.train.mean) == (0.5, 0.5, 0.5)


def _bad_arrays(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return {"name": "arrays", "path": str(tmp_path / "bad.npz")}


def _bad_table(tmp_path, text):
    (tmp_path / "bad.csv").write_text(text)
    return {"name": "table", "path": str(tmp_path / "bad.csv")}


def _mixed_sizes(tmp_path):
    _class_folder(tmp_path / "images", sizes=((6, 6), (8, 6)))
    return {"name": "image_folder", "path": str(tmp_path / "images")}


X, Y = np.zeros((10, 2)), np.arange(10) % 2
BAD_INPUTS = {
    "missing file": (
        lambda p: {"name": "arrays", "path": str(p / "nothing.npz")},
        r"^arrays file '.*nothing.npz' does not exist; fix config.dataset.path$",
    ),
    "missing key": (
        lambda p: _bad_arrays(p, x=X, labels=Y),
        r"^'.*bad.npz' has no array 'y' \(it has: x, labels\); set config.dataset.label_key$",
    ),
    "missing column": (
        lambda p: _bad_table(p, "a,b\n" + "1,0\n" * 10),
        r"^'.*bad.csv' has no column 'target' \(it has: a, b\); set config.dataset.target$",
    ),
    "unequal lengths": (
        lambda p: _bad_arrays(p, x=X, y=Y[:7]),
        r"^'.*bad.npz': 'x' has 10 rows, 'y' has 7 rows; every example needs exactly one label$",
    ),
    "mixed image sizes": (
        _mixed_sizes,
        r"^images of different sizes \(6x6 .*, 6x8 .*\); set config.dataset.image_size to "
        "resize and crop them to one square size$",
    ),
    "NaN inputs": (
        lambda p: _bad_arrays(p, x=np.where(np.arange(10)[:, None] == 3, np.nan, X), y=Y),
        r"^'.*bad.npz' array 'x' has NaN or infinite values in 1 rows \(first: row 3\); "
        "remove or impute them$",
    ),
    "NaN in a table": (
        lambda p: _bad_table(p, "a,target\n" + "1,0\n" * 4 + ",1\n" + "2,1\n" * 5),
        r"^'.*bad.csv' features has NaN or infinite values in 1 rows \(first: row 4\); "
        "remove or impute them$",
    ),
    "labels outside the class range": (
        lambda p: {**_bad_arrays(p, x=X, y=np.arange(10) % 3), "num_classes": 2},
        r"^label 2 in the 'train' set is outside \[0, 2\); fix the labels or the dataset's "
        "num_classes$",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line(case, tmp_path):
    make_config, message = BAD_INPUTS[case]
    config = make_config(tmp_path)
    with pytest.raises(UsageError, match=message) as error:
        data.make(**config)
    assert "\n" not in str(error.value)


def test_image_labels_come_from_the_training_classes(tmp_path):
    _class_folder(tmp_path / "train")
    _class_folder(tmp_path / "test")
    _png(tmp_path / "test" / "class_9" / "0.png", (6, 6), 0)
    splits = {"train": str(tmp_path / "train"), "test": str(tmp_path / "test")}
    with pytest.raises(UsageError, match="'test' set has class folder 'class_9', which"):
        data.make("image_folder", splits=splits)


def test_path_or_splits_exactly_one(tmp_path):
    with pytest.raises(UsageError, match="set exactly one of config.dataset.path"):
        files.arrays()
