"""What every model stage shares: loading the rounds, scoring predictions, writing results.

A model stage trains and scores its model once per evaluation round of the normalized
table (one round by default; every official fold with ``data.esc50.cv``). Scores are
scikit-learn's: accuracy, balanced accuracy, F1 weighted by support (the original tables'
F1) and macro F1, with their mean and standard deviation over the rounds. A model that
predicts a single class for everything fails the stage instead of producing metrics that
look like results.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from soundclf.evaluation.probabilities import TrainingError
from soundclf.io import write_json, write_with
from soundclf.params import METRICS
from soundclf.table import Round, load_rounds, recording_groups


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


def class_probabilities(estimator: Any, X, classes: np.ndarray) -> np.ndarray:
    """Each row's probability of every class of ``classes``, in that order.

    ``predict_proba`` where the estimator has one; else the softmax of its decision values
    (LinearSVC: scores, not calibrated; the ensemble learns how far to trust them). A class
    the estimator never saw gets 0.
    """
    if hasattr(estimator, "predict_proba"):
        found = np.asarray(estimator.predict_proba(X), dtype=float)
    elif not hasattr(estimator, "decision_function"):
        raise TrainingError(f"{type(estimator).__name__} has neither predict_proba nor "
                            "decision_function: a model must give class probabilities (for "
                            "the ensemble and stages.predict)")
    else:
        scores = np.asarray(estimator.decision_function(X), dtype=float)
        if scores.ndim == 1:  # a binary estimator: one column, for its second class
            scores = np.stack([-scores, scores], axis=1) / 2
        found = np.exp(scores - logsumexp(scores, axis=1, keepdims=True))
    out = np.zeros((len(found), len(classes)))
    out[:, np.searchsorted(classes, estimator.classes_)] = found
    return out


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


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS, OpenMP and torch on one thread, so that a fit gives the same result however
    many run at once (``tune.n_jobs``) and on any number of cores."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    with threadpool_limits(1):
        if torch:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch:
                torch.set_num_threads(before)


def fit_offering(estimator: Any, X, y, **offered: Any) -> Any:
    """``estimator.fit(X, y)``, also given those of ``offered`` that are not None and that
    its ``fit`` signature names (``groups``, ``watch``, ``live``)."""
    accepted = signature(estimator.fit).parameters
    return estimator.fit(X, y, **{k: v for k, v in offered.items()
                                  if k in accepted and v is not None})


def fit_predict(estimator: Any, rnd: Round, live: Any = None) -> tuple[Any, RoundResult]:
    """Fit an unfitted estimator on the round's training part; predict its validation part.

    The one way a model is trained: by its stage, on ``tune``'s inner folds, for its
    out-of-fold probabilities. ``estimator.fit(X, y)`` is also given, where its signature
    names them: ``groups``, the recording of each training clip (``src_file``: for folds
    carved inside the training part); ``watch``, the validation part's ``(X, y)``, which an
    NN reports each epoch without learning from it; ``live``, a dvclive ``Live`` for
    per-epoch curves. The fitted estimator's ``fit_info_`` (a dict of numbers, if it has
    one) joins the round's figures, and its class probabilities of the validation clips
    (:func:`class_probabilities`) join the RoundResult. A ConvergenceWarning is printed with
    the round's name.
    """
    if live is not None and "live" not in signature(estimator.fit).parameters:
        raise TrainingError(f"{type(estimator).__name__} logs no training curves")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_offering(estimator, *rnd.xy("train"), groups=recording_groups(rnd.rows("train")),
                     watch=rnd.xy("valid"), live=live)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            print(f"round {rnd.name}: training did not converge ({warning.message}); the "
                  "scores are those of the last iteration")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    x_valid = rnd.xy("valid")[0]
    return estimator, RoundResult(
        rnd, estimator.predict(x_valid), dict(getattr(estimator, "fit_info_", {})),
        class_probabilities(estimator, x_valid, round_classes(rnd)))


def train_rounds(
    model: str, normalized: Path, fit: Callable[[Round, bool], tuple[Any, RoundResult]],
    metrics_path: Path, predictions_path: Path, scores_path: Path | None = None,
) -> tuple[Any, dict, list[RoundResult]]:
    """What a model stage does: train and score every round, then write the results.

    Every round is checked for non-finite features before any training; then
    ``fit(rnd, primary)`` trains on each round (``primary`` for the first) and returns the
    fitted model and its RoundResult. Returns the primary round's model, the one the stage
    saves, the metrics and every round's result.
    """
    rounds = load_rounds(normalized)
    for rnd in rounds:
        bad = rnd.non_finite()
        if len(bad):
            raise TrainingError(
                f"non-finite feature values in {len(bad)} clip(s), e.g. "
                f"{bad['filename'].iloc[0]} ({bad['split'].iloc[0]} split of round {rnd.name})")
    primary, results = None, []
    for rnd in tqdm(rounds, desc=f"{model} rounds", disable=len(rounds) == 1):
        fitted, result = fit(rnd, not results)
        if not results:
            primary = fitted
        results.append(result)
    return primary, write_results(model, results, metrics_path, predictions_path,
                                  scores_path=scores_path), results


def headline(metrics: dict) -> str:
    """The accuracy a stage prints: of its one round, or the mean ± std over several."""
    if "rounds" not in metrics:
        return f"accuracy {metrics['accuracy']:.4f} on {metrics['n_valid']} clips"
    return (f"accuracy {metrics['accuracy']:.4f} ± {metrics['std']['accuracy']:.4f} "
            f"(mean ± std of {metrics['n_rounds']} rounds)")
