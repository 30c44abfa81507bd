"""CLINC150 intent classification with out-of-scope queries (``clinc_oos``) [1].

150 in-scope intents over 10 domains (100 train / 20 validation / 30 test queries per
intent) plus out-of-scope queries that belong to none of them: the standard text
benchmark for OOD detection in Uncertainty Baselines [2]. The TFDS catalogue does not
carry it (Uncertainty Baselines ships its own builder), so it is read from the
authors' ``data_full.json``: ``{"train" | "val" | "test" | "oos_train" | "oos_val" |
"oos_test": [[text, intent], ...]}``.

Text becomes token ids ``[N, max_length]`` with a word-level vocabulary built from the
in-scope training queries: lower-cased alphanumeric words, id 0 for padding, 1 for an
unknown word, then words by decreasing training frequency (ties alphabetical), cut
at ``vocab_size``. Queries are right-padded or truncated to ``max_length``.

References:
  [1] Larson et al. An Evaluation Dataset for Intent Classification and Out-of-Scope
      Prediction. EMNLP 2019. https://arxiv.org/abs/1909.02027
  [2] Nado et al. Uncertainty Baselines. 2021. https://arxiv.org/abs/2106.04015
"""

from __future__ import annotations

import collections
import json
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from relbench.data.sources import ArraySource, Dataset, EvalSet
from relbench.errors import UsageError

PAD, UNKNOWN = 0, 1
_WORD = re.compile(r"[a-z0-9']+")
_SOURCE = "https://github.com/clinc/oos-eval/blob/master/data/data_full.json"


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: Sequence[str], vocab_size: int) -> dict[str, int]:
    """Word -> id (2 .. vocab_size - 1) by decreasing count, ties alphabetical."""
    counts = collections.Counter(w for t in texts for w in words(t))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 2]
    return {w: i + 2 for i, w in enumerate(ranked)}


def encode(texts: Sequence[str], vocabulary: dict[str, int], max_length: int) -> np.ndarray:
    """Texts -> right-padded ``[N, max_length]`` int32 token ids."""
    out = np.full((len(texts), max_length), PAD, np.int32)
    for row, text in enumerate(texts):
        ids = [vocabulary.get(w, UNKNOWN) for w in words(text)][:max_length]
        out[row, : len(ids)] = ids
    return out


def mock_clinc(num_examples: int, num_intents: int = 150) -> dict[str, list[list[str]]]:
    """Random queries in the layout of ``data_full.json`` (fixed seed), for smoke runs."""
    rng = np.random.default_rng(0)
    vocabulary = [f"word{i}" for i in range(64)]
    num_intents = min(num_intents, num_examples)  # every intent occurs in every split

    def split(intents: bool) -> list[list[str]]:
        rows = []
        for row in range(num_examples):
            text = " ".join(rng.choice(vocabulary, rng.integers(3, 12)))
            rows.append([text, f"intent{row % num_intents}" if intents else "oos"])
        return rows

    return {
        **{name: split(True) for name in ("train", "val", "test")},
        **{name: split(False) for name in ("oos_train", "oos_val", "oos_test")},
    }


def _load(data_file: str | None) -> dict[str, list[list[str]]]:
    path = pathlib.Path(data_file) if data_file else None
    if path is None or not path.is_file():
        raise UsageError(
            f"CLINC150 data file '{data_file}' not found; download data_full.json from "
            f"{_SOURCE} and set config.dataset.data_file to its path"
        )
    return json.loads(path.read_text())


def clinc_oos(
    data_file: str | None = None,
    max_length: int = 32,
    vocab_size: int = 8192,
    mock_num_examples: int = 0,
) -> Dataset:
    """CLINC150: in-scope train / validation / test, and the out-of-scope test set as OOD.

    Args:
      data_file: path of ``data_full.json``.
      max_length: tokens per query (longer queries are truncated).
      vocab_size: the vocabulary size, padding and unknown ids included.
      mock_num_examples: if > 0, random queries (that many per split) instead of the file.
    """
    raw = mock_clinc(mock_num_examples) if mock_num_examples > 0 else _load(data_file)
    intents = sorted({intent for _, intent in raw["train"]})
    index = {intent: i for i, intent in enumerate(intents)}
    vocabulary = build_vocabulary([text for text, _ in raw["train"]], vocab_size)

    def source(rows: list[list[str]], ood: bool) -> ArraySource:
        labels = [-1 if ood else index[intent] for _, intent in rows]
        tokens = encode([text for text, _ in rows], vocabulary, max_length)
        return ArraySource({"input": tokens, "label": np.asarray(labels, np.int32)})

    return Dataset(
        train=source(raw["train"], ood=False),
        eval_sets={
            "validation": EvalSet(source(raw["val"], ood=False)),
            "test": EvalSet(source(raw["test"], ood=False)),
            "ood": EvalSet(source(raw["oos_test"], ood=True), is_ood=True),
        },
        num_classes=len(intents),
        input_shape=(max_length,),
    )
