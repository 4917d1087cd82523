"""Evaluation rounds: the normalized table cut into a training and a validation part, once per
round, and what a model gave on one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soundclf.table import InputsError, feature_columns


@dataclass
class Round:
    """One evaluation round: the table cut into a training part and a validation part.

    A round is what a model is trained and scored on once: ESC-50's validation fold, or
    each official fold in turn with ``data.esc50.cv``; each of FreeSound's
    ``data.freesound.repeats`` stratified splits. ``name`` is e.g. ``fold5`` or ``seed42``.
    """

    name: str
    table: pd.DataFrame
    features: list[str]
    # other inputs than the feature columns, a row per table row (log-mel spectrograms)
    inputs: np.ndarray | None = None

    @property
    def is_valid(self) -> np.ndarray:
        return (self.table["split"] == "valid").to_numpy()

    def rows(self, part: str) -> pd.DataFrame:
        """The ``train`` or ``valid`` rows, metadata included."""
        return self.table[self.table["split"] == part]

    def xy(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features (or ``inputs``) and labels of the ``train`` or ``valid`` part."""
        rows = self.rows(part)
        if self.inputs is not None:
            return self.inputs[(self.table["split"] == part).to_numpy()], rows["label"].to_numpy()
        return rows[self.features].to_numpy(), rows["label"].to_numpy()

    def part(self, part: str, name: str, is_valid: np.ndarray) -> Round:
        """The ``part`` of this round cut anew by ``is_valid`` (over its rows), as a round:
        ``tune``'s inner folds."""
        keep = (self.table["split"] == part).to_numpy()
        table = self.table[keep].reset_index(drop=True)
        return Round(name, table.assign(split=np.where(is_valid, "valid", "train")),
                     self.features, None if self.inputs is None else self.inputs[keep])

    def with_inputs(self, by_filename: dict[str, int], inputs: np.ndarray, source: str,
                    after_features: bool = False) -> Round:
        """This round reading ``inputs[by_filename[clip]]`` for every clip instead of the
        features, or with ``after_features``, after them (each clip's inputs flattened)."""
        missing = sorted(set(self.table["filename"]) - by_filename.keys())
        if missing:
            raise InputsError(f"{source} has no entry for {len(missing)} clip(s) of the table, "
                           f"e.g. {missing[0]}: rerun the stage that makes it")
        rows = inputs[self.table["filename"].map(by_filename).to_numpy()]
        if after_features:
            rows = np.concatenate([self.table[self.features].to_numpy(),
                                   rows.reshape(len(rows), -1)], axis=1)
        return Round(self.name, self.table, self.features, rows)

    def non_finite(self) -> pd.DataFrame:
        """The clips (``filename``, ``split``) with a NaN or infinite feature value."""
        finite = np.isfinite(self.table[self.features].to_numpy()).all(axis=1)
        return self.table.loc[~finite, ["filename", "split"]]


def load_rounds(path: Path) -> list[Round]:
    """Every evaluation round of a normalize stage output, the primary one first.

    A table without a ``round`` column (one made by hand) is a single round, ``valid``.
    """
    table = pd.read_parquet(path)
    features = feature_columns(list(table.columns))
    if "round" not in table:
        return [Round("valid", table, features)]
    return [Round(str(name), part.reset_index(drop=True), features)
            for name, part in table.groupby("round", sort=False)]


def recording_groups(rows: pd.DataFrame) -> np.ndarray:
    """The recording of each clip (``src_file``, ESC-50; ``group``, a folder dataset's
    metadata), or one per clip where none is known.

    Clips cut from one recording must stay on one side of any fold, or it would leak.
    """
    for column in ("src_file", "group"):
        if column in rows:
            return rows[column].to_numpy()
    return np.arange(len(rows))


@dataclass
class RoundResult:
    """A model's validation predictions in one round, with model-specific figures."""

    round: Round
    predicted: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)  # numbers, or what tune chose
    # each validation clip's probability of every class of the round (class_probabilities)
    probabilities: np.ndarray | None = None
    # the training clips' out-of-fold probabilities (tune.out_of_fold), if computed
    oof: pd.DataFrame | None = None


def round_classes(rnd: Round) -> np.ndarray:
    """The classes of a round's table, sorted: the columns of its probabilities."""
    return np.unique(rnd.table["label"].to_numpy())
