"""Scores of a model's validation predictions (scikit-learn's accuracy, balanced accuracy,
weighted and macro F1), per evaluation round and over the rounds, and the files they go to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import RoundResult
from soundclf.io import write_json, write_with
from soundclf.params import METRICS


def classification_metrics(actual, predicted) -> dict[str, float]:
    return {
        "accuracy": accuracy_score(actual, predicted),
        "balanced_accuracy": balanced_accuracy_score(actual, predicted),
        "f1_weighted": f1_score(actual, predicted, average="weighted", zero_division=0),
        "f1_macro": f1_score(actual, predicted, average="macro", zero_division=0),
    }


@dataclass
class Scores:
    """Scores of validation predictions, per evaluation round and over the rounds."""

    rounds: dict[str, dict[str, float]]

    @classmethod
    def of(cls, predictions: pd.DataFrame) -> Scores:
        """From a predictions table: ``actual`` and ``predicted``, and ``round`` if several."""
        if "round" not in predictions:
            predictions = predictions.assign(round="valid")
        return cls({str(name): classification_metrics(part["actual"], part["predicted"])
                    for name, part in predictions.groupby("round", sort=False)})

    @property
    def mean(self) -> dict[str, float]:
        return {m: float(np.mean([r[m] for r in self.rounds.values()])) for m in METRICS}

    @property
    def std(self) -> dict[str, float]:
        """Sample standard deviation (ddof=1) over the rounds; empty for a single round."""
        if len(self.rounds) < 2:
            return {}
        return {m: float(np.std([r[m] for r in self.rounds.values()], ddof=1))
                for m in METRICS}


def check_not_collapsed(predicted, n_classes: int, model: str) -> None:
    predicted_classes = np.unique(np.asarray(predicted))
    if n_classes > 1 and len(predicted_classes) == 1:
        raise TrainingError(
            f"{model} predicts the single class '{predicted_classes[0]}' for every "
            f"validation clip; refusing to write metrics for a collapsed model "
            f"(check the learning rate, the scaler and the labels)"
        )


def predictions_table(results: list[RoundResult]) -> pd.DataFrame:
    """A row per validation clip and round: ``filename``, ``round``, ``actual``, ``predicted``."""
    return pd.concat([pd.DataFrame({
        "filename": r.round.rows("valid")["filename"].to_numpy(),
        "round": r.round.name,
        "actual": r.round.xy("valid")[1], "predicted": np.asarray(r.predicted),
    }) for r in results], ignore_index=True)


def scores_of(metrics: dict) -> dict:
    """The scores alone of :func:`write_results`'s metrics (and their ``std`` over the
    rounds): what ``dvc metrics show`` lists, a row per dataset and model."""
    return {**{m: metrics[m] for m in METRICS},
            **({"std": metrics["std"]} if "std" in metrics else {})}


def write_results(model: str, results: list[RoundResult], metrics_path: Path,
                  predictions_path: Path, n_classes: int | None = None,
                  scores_path: Path | None = None) -> dict:
    """Score every round's predictions and write the metrics and the predictions.

    One round: its scores, counts and ``extra`` figures (an NN's validation loss, say).
    Several: the mean of each score over the rounds, ``std`` (over the rounds) and
    ``rounds`` with every round's scores, counts and extra figures. The predictions are
    :func:`predictions_table`; ``scores_path`` gets the scores alone (:func:`scores_of`).
    """
    if n_classes is None:  # else the class list's (the ensemble's table: scored clips only)
        n_classes = int(results[0].round.table["label"].nunique())
    for result in results:
        check_not_collapsed(result.predicted, n_classes, f"{model} (round {result.round.name})")
    predictions = predictions_table(results)
    scores = Scores.of(predictions)
    per_round = {
        r.round.name: {**scores.rounds[r.round.name], "n_train": int((~r.round.is_valid).sum()),
                       "n_valid": int(r.round.is_valid.sum()), **r.extra}
        for r in results
    }
    if len(results) == 1:
        metrics = {**next(iter(per_round.values())), "n_classes": n_classes}
    else:
        metrics = {**scores.mean, "n_classes": n_classes, "n_rounds": len(results),
                   "std": scores.std, "rounds": per_round}
    write_with(predictions_path, lambda tmp: predictions.to_csv(tmp, index=False))
    write_json(metrics_path, metrics)
    if scores_path is not None:
        write_json(scores_path, scores_of(metrics))
    return metrics


def headline(metrics: dict) -> str:
    """The accuracy a stage prints: of its one round, or the mean ± std over several."""
    if "rounds" not in metrics:
        return f"accuracy {metrics['accuracy']:.4f} on {metrics['n_valid']} clips"
    return (f"accuracy {metrics['accuracy']:.4f} ± {metrics['std']['accuracy']:.4f} "
            f"(mean ± std of {metrics['n_rounds']} rounds)")
