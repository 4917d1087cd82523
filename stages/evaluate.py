"""What every model stage shares: loading the split, scoring predictions, writing results.

Scores are scikit-learn's: accuracy, balanced accuracy, F1 weighted by support (the
original tables' F1) and macro F1. A model that predicts a single class for everything
fails the stage instead of producing metrics that look like results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from stages.audio import feature_columns
from stages.io import write_json, write_with

METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")


class TrainingError(RuntimeError):
    """Training that produced no usable model (NaN loss, a single predicted class)."""


@dataclass
class Split:
    """The normalized table of one dataset, cut into training and validation parts."""

    table: pd.DataFrame
    features: list[str]

    @classmethod
    def load(cls, path: Path) -> Split:
        table = pd.read_parquet(path)
        return cls(table, feature_columns(list(table.columns)))

    @property
    def is_valid(self) -> np.ndarray:
        return (self.table["split"] == "valid").to_numpy()

    def check_finite(self) -> None:
        """Refuse NaN or infinite features before any training."""
        finite = np.isfinite(self.table[self.features].to_numpy()).all(axis=1)
        if not finite.all():
            bad = self.table.loc[~finite, ["filename", "split"]]
            raise TrainingError(
                f"non-finite feature values in {len(bad)} clip(s), e.g. "
                f"{bad['filename'].iloc[0]} ({bad['split'].iloc[0]} split)"
            )

    def xy(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the ``train`` or ``valid`` part."""
        rows = self.table[self.table["split"] == part]
        return rows[self.features].to_numpy(), rows["label"].to_numpy()


def classification_metrics(actual, predicted) -> dict[str, float]:
    return {
        "accuracy": accuracy_score(actual, predicted),
        "balanced_accuracy": balanced_accuracy_score(actual, predicted),
        "f1_weighted": f1_score(actual, predicted, average="weighted", zero_division=0),
        "f1_macro": f1_score(actual, predicted, average="macro", zero_division=0),
    }


def check_not_collapsed(predicted, n_classes: int, model: str) -> None:
    predicted_classes = np.unique(np.asarray(predicted))
    if n_classes > 1 and len(predicted_classes) == 1:
        raise TrainingError(
            f"{model} predicts the single class '{predicted_classes[0]}' for every "
            f"validation clip; refusing to write metrics for a collapsed model "
            f"(check the learning rate, the scaler and the labels)"
        )


def write_results(
    model: str, split: Split, predicted, metrics_path: Path, predictions_path: Path,
    extra: dict[str, float] | None = None,
) -> dict[str, float]:
    """Score ``predicted`` against the validation labels and write metrics and predictions.

    ``extra`` adds model-specific figures (an NN's final validation loss) to the metrics.
    """
    _, actual = split.xy("valid")
    labels = split.table["label"]
    check_not_collapsed(predicted, labels.nunique(), model)
    metrics = classification_metrics(actual, predicted)
    metrics.update(
        n_train=int((~split.is_valid).sum()), n_valid=int(split.is_valid.sum()),
        n_classes=int(labels.nunique()), **(extra or {}),
    )
    predictions = pd.DataFrame({
        "filename": split.table.loc[split.is_valid, "filename"].to_numpy(),
        "actual": actual, "predicted": np.asarray(predicted),
    })
    write_with(predictions_path, lambda tmp: predictions.to_csv(tmp, index=False))
    write_json(metrics_path, metrics)
    return metrics
