"""Hyperparameter search by cross-validation inside an evaluation round's training part.

``tune.svc`` and ``tune.nn`` map keys of the ``svc`` and ``nn`` sections to candidate
values, e.g. ``{C: [0.01, 0.1, 1.0]}``, or to null (not searched). With candidates listed,
a model stage, in every evaluation round:

1. cuts the round's training part into inner folds (ESC-50: the official folds in it, so a
   recording's clips are never split; FreeSound: ``tune.folds`` stratified folds);
2. scores every combination of the grid's values by the stage's own training code on each
   inner fold in turn, and keeps the best mean ``tune.metric`` (the first listed on a tie);
3. trains with it on the whole training part and scores that, once, on the round's
   validation split, which the search never reads.

So the choice is made on training data only, anew in every round: with ``data.esc50.cv``
the figures are nested cross-validation. The inner folds are cut from the round's
normalized table, whose scaler saw only that round's training part. The metrics record the
choice (``tuned``) and its inner score (``tuned_<metric>``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from stages.evaluate import RoundResult, Scores, Split, TrainingError, predictions_table
from stages.folds import class_folds


def inner_folds(train: pd.DataFrame, n_folds: int, seed: int, where: str = "the training part"
                ) -> dict[str, np.ndarray]:
    """Validation masks over the training clips: their official folds, or stratified folds.

    Stratified folds (``tune.folds``) keep a class with fewer clips than folds in training
    only (stages.folds).
    """
    if "fold" in train:
        return {f"fold{f}": (train["fold"] == f).to_numpy() for f in sorted(train["fold"].unique())}
    folds = class_folds(train["label"], None, n_folds, seed, param="tune.folds", where=where)
    return {f"inner{k}": np.isin(np.arange(len(train)), valid)
            for k, (_, valid) in enumerate(folds, 1)}


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order listed (last key fastest)."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def grid(params: dict, section: str) -> dict[str, list]:
    """The keys of ``tune.<section>`` with candidates listed (null ones are not searched)."""
    return {k: v for k, v in params["tune"][section].items() if v is not None}


def with_values(params: dict, section: str, values: dict) -> dict:
    """A copy of ``params`` with ``values`` set in ``section``."""
    changed = copy.deepcopy(params)
    changed[section].update(values)
    return changed


def search(section: str, params: dict, split: Split,
           fit_predict: Callable[[dict, Split], RoundResult]) -> tuple[dict, dict]:
    """The params with ``section``'s best values in this round, and what to record of it.

    ``fit_predict(params, split)`` is the stage's training and prediction on one split.
    With no candidates listed the params are returned unchanged.
    """
    searched, settings = grid(params, section), params["tune"]
    if not searched:
        return params, {}
    train = split.table[~split.is_valid].reset_index(drop=True)
    folds = inner_folds(train, settings["folds"], params["seed"], f"round {split.name}")
    candidates, scores = combinations(searched), []
    for values in tqdm(candidates, desc=f"tune.{section} in round {split.name}"):
        candidate = with_values(params, section, values)
        try:
            results = [fit_predict(candidate, Split(  # named e.g. fold5/fold1 in messages
                f"{split.name}/{name}", train.assign(split=np.where(is_valid, "valid", "train")),
                split.features)) for name, is_valid in folds.items()]
        except TrainingError as exc:  # a diverging candidate loses; the search goes on
            print(f"tune.{section} {values}: {exc}")
            scores.append(np.nan)
            continue
        scores.append(Scores.of(predictions_table(results)).mean[settings["metric"]])
    if np.isnan(scores).all():
        raise TrainingError(f"every tune.{section} candidate failed in round {split.name}")
    best = int(np.nanargmax(scores))
    print(f"tune.{section} in round {split.name}: {candidates[best]} "
          f"({settings['metric']} {scores[best]:.4f}, mean of {len(folds)} inner folds)")
    return (with_values(params, section, candidates[best]),
            {"tuned": candidates[best], f"tuned_{settings['metric']}": float(scores[best])})


SECTIONS = {"svc": "svc", "nn-2layer": "nn", "nn-5layer": "nn"}  # model -> its tune grid


def chosen_in(metrics: dict, round_name: str, source: str) -> dict:
    """What the search chose in round ``round_name``, from a model stage's metrics."""
    record = metrics["rounds"].get(round_name) if "rounds" in metrics else metrics
    if record is None or "tuned" not in record:
        raise TrainingError(f"{source} records no tuned values for round {round_name}: "
                            "rerun its stage (dvc repro)")
    return record["tuned"]
