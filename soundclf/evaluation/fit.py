"""Fitting one estimator on an evaluation round: the one way a model is trained (by its
stage, on ``tune``'s inner folds, for its out-of-fold probabilities), its class
probabilities, and every round of a model stage trained and scored in turn.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from soundclf import memory
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import (
    Round,
    RoundResult,
    load_rounds,
    recording_groups,
    round_classes,
)
from soundclf.evaluation.scores import write_results


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
                            "the ensemble and predict)")
    else:
        scores = np.asarray(estimator.decision_function(X), dtype=float)
        if scores.ndim == 1:  # a binary estimator: one column, for its second class
            scores = np.stack([-scores, scores], axis=1) / 2
        found = np.exp(scores - logsumexp(scores, axis=1, keepdims=True))
    out = np.zeros((len(found), len(classes)))
    out[:, np.searchsorted(classes, estimator.classes_)] = found
    return out


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


def fit_memory(estimator: Any, X, y) -> int:
    """About how many bytes fitting ``estimator`` on ``X, y`` takes beyond them: its own
    ``fit_memory`` where it has one (the networks), else three copies of ``X`` (what
    scikit-learn's solvers make of their input, at most)."""
    own = getattr(estimator, "fit_memory", None)
    return int(own(X, y)) if own else 3 * len(X) * np.asarray(X[:1]).nbytes


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
    per-epoch curves. What the fit freed is handed back to the system when it ends
    (soundclf.memory.release). The fitted estimator's ``fit_info_`` (a dict of numbers, if it has
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
    result = RoundResult(rnd, estimator.predict(x_valid), dict(getattr(estimator, "fit_info_", {})),
                         class_probabilities(estimator, x_valid, round_classes(rnd)))
    memory.release()  # what the fit freed goes back to the system (soundclf.memory)
    return estimator, result


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


