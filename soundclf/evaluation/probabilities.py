"""A model's class probabilities: the error a model that gave none usable raises, and the
checks of a probabilities table (what stages.train ``--probabilities`` writes) that its
readers share: ensemble-member, train-ensemble and the ensemble itself.

Only numpy and pandas: ensemble-member, a stage per dataset and member, starts in a
second where scikit-learn and PyTorch would take several.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from soundclf.table import PREFIX


class TrainingError(RuntimeError):
    """Training that produced no usable model (NaN loss, a single predicted class)."""


def check_probabilities(probs: np.ndarray, model: str) -> None:
    """Refuse probabilities that are not finite, outside [0, 1] or not summing to 1."""
    sums = probs.sum(axis=1)
    if not (np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
            and np.allclose(sums, 1, atol=1e-5)):
        raise TrainingError(f"{model} gave invalid class probabilities (row sums "
                            f"{sums.min():.6f} to {sums.max():.6f}, min {probs.min():.6f})")


PROBABILITY_COLUMNS = ["round", "split", "filename", "label", "fold"]


def read_probabilities(model: str, path: Path) -> pd.DataFrame:
    """A model's probabilities table (stages.train ``--probabilities``), refused with a
    message naming it if the ensemble could not learn from it."""
    table = pd.read_parquet(path)
    classes = [c for c in table.columns if c.startswith(PREFIX)]
    missing = [c for c in PROBABILITY_COLUMNS if c not in table.columns]
    if missing or not classes:
        raise TrainingError(f"{path} is not a probabilities table of stages.train (missing "
                            f"{', '.join(missing) or 'the p_<class> columns'})")
    for name, part in table.groupby("round", sort=False):
        for split in ("train", "valid"):
            if not (part["split"] == split).any():
                raise TrainingError(f"{path} has no {split} clips in round {name}: rerun "
                                    f"train-{model}" + (" with oof.folds 1 or more (0 "
                                                        "writes no out-of-fold rows)"
                                                        if split == "train" else ""))
    check_probabilities(table[classes].to_numpy(), f"{model} ({path})")
    return table
