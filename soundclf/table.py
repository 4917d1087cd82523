"""The tables and files that pass between stages: column names and inputs files.

``feature-extraction`` writes a row per clip: metadata (``filename``, ``label``, ``fold``
or ``src_file``...) and the feature columns, named ``<block>_<stat>_<bin>`` (e.g.
``mel_std_12``); a probabilities table has a ``p_<class>`` column per class; an inputs
file (spectrograms, embeddings) holds ``filename`` and ``values``. Needs neither librosa
nor a model library, so every stage can import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soundclf.io import write_with

BLOCKS = ("stft", "mel", "cqt")  # the feature blocks, in column order
PREFIX = "p_"  # a probabilities table's class columns: p_<class> (stages.train)


class InputsError(ValueError):
    """A model's inputs file that lacks clips of the table."""


def feature_columns(columns: list[str]) -> list[str]:
    """The feature columns of a table, in table order (everything else is metadata)."""
    return [c for c in columns if c.split("_", 1)[0] in BLOCKS and c.rsplit("_", 1)[-1].isdigit()]


def block_of(column: str) -> str:
    """The block of a feature column: ``block_of("mel_std_12") == "mel"``."""
    return column.split("_", 1)[0]


def load_inputs(path: Path) -> tuple[dict[str, int], np.ndarray]:
    """An inputs file (``filename`` and ``values``, e.g. stages.spectrograms's): each clip's
    row, and the values."""
    with np.load(path) as data:
        return {str(f): i for i, f in enumerate(data["filename"])}, data["values"]


def save_inputs(out: Path, filenames: np.ndarray, values: np.ndarray) -> None:
    """An inputs file (:func:`load_inputs`), written atomically."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
            np.savez(f, filename=filenames, values=values)

    write_with(out, save)


