"""Hyperparameter search by cross-validation inside an evaluation round's training part.

A model's grid is ``tune.<its Model.tune>``: ``tune.svc`` maps keys of the ``svc`` section
and ``tune.nn`` keys of ``nn.training`` to candidate values, e.g. ``{C: [0.01, 0.1, 1.0]}``,
or to null (not searched). With candidates listed, a model stage, in every evaluation round:

1. cuts the round's training part into inner folds (ESC-50: the official folds in it, so a
   recording's clips are never split; FreeSound: ``tune.folds`` stratified folds);
2. scores every combination of the grid's values, trained as the stage trains, on each
   inner fold in turn (or on the first ``tune.max_folds`` of them, each still trained on
   all the others: the search then costs that fraction, its scores read fewer clips), and
   keeps the best mean ``tune.metric`` (the first listed on a tie);
3. trains with it on the whole training part and scores that, once, on the round's
   validation split, which the search never reads.

So the choice is made on training data only, anew in every round: with ``data.esc50.cv``
the figures are nested cross-validation. The inner folds are cut from the round's
normalized table, whose scaler saw only that round's training part. The metrics record the
choice (``tuned``) and its inner score (``tuned_<metric>``).
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from soundclf import memory
from soundclf.evaluation.fit import fit_predict, one_thread
from soundclf.evaluation.folds import class_folds
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round, RoundResult, round_classes
from soundclf.evaluation.scores import Scores, predictions_table
from soundclf.models import Model
from soundclf.params import get as get_param
from soundclf.params import with_values


def inner_folds(train: pd.DataFrame, n_folds: int, seed: int, where: str = "the training part"
                ) -> dict[str, np.ndarray]:
    """Validation masks over the training clips: their official folds, or stratified folds.

    Stratified folds (``tune.folds``) keep a class with fewer clips than folds in training
    only (soundclf.evaluation.folds).
    """
    if "fold" in train:
        return {f"fold{f}": (train["fold"] == f).to_numpy() for f in sorted(train["fold"].unique())}
    folds = class_folds(train["label"], None, n_folds, seed, param="tune.folds", where=where)
    return {f"inner{k}": np.isin(np.arange(len(train)), valid)
            for k, (_, valid) in enumerate(folds, 1)}


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order listed (last key fastest)."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def grid(params: dict, model: Model) -> dict[str, list]:
    """The keys of the model's ``tune`` grid with candidates listed (null: not searched)."""
    if model.tune is None:
        return {}
    return {k: v for k, v in params["tune"][model.tune].items() if v is not None}


def inner_fits(model: Model, params: dict, folds: int, out_of_fold: bool = True
               ) -> tuple[int, int]:
    """How many fits a round of ``folds`` inner folds trains: the search's
    (:func:`search_folds`), then the out-of-fold ones it has not already trained
    (:func:`out_of_fold`), each of its first folds sliced as they slice them."""
    searched = grid(params, model)
    search = len(range(folds)[:params["tune"]["max_folds"]]) if searched else 0
    oof = len(range(folds)[:params["oof"]["folds"]]) if out_of_fold else 0
    return len(combinations(searched)) * search, max(0, oof - search)


def fit_fold(model: Model, params: dict, rnd: Round, alone: bool = False
             ) -> RoundResult | TrainingError:
    """One candidate trained and scored on one inner fold, on one thread, or ``alone`` (the
    only fit of its kind in the stage) on every thread of this process; a diverging one
    returns its error (it loses, the search goes on)."""
    try:
        with nullcontext() if alone else one_thread():
            return fit_predict(model.build(params, rnd.features), rnd)[1]
    except TrainingError as exc:
        return exc


def inner_rounds(rnd: Round, params: dict, limit: int | None) -> dict[str, Round]:
    """The inner folds of the round's training part as rounds (``fold5/fold1``...), the
    first ``limit`` of them (None: every one)."""
    train = rnd.rows("train").reset_index(drop=True)
    folds = inner_folds(train, params["tune"]["folds"], params["seed"], f"round {rnd.name}")
    return {name: rnd.part("train", f"{rnd.name}/{name}", is_valid)
            for name, is_valid in list(folds.items())[:limit]}


def fit_folds(model: Model, tasks: list[tuple[dict, Round]], n_jobs: int, desc: str
              ) -> list[RoundResult | TrainingError]:
    """:func:`fit_fold` of every ``(params, inner round)``, ``n_jobs`` at a time, in worker
    processes that are stopped when they are done (soundclf.memory.stop_workers), each on
    one thread, so that the results are the same whatever ``n_jobs``. A single fit runs in
    this process on all its threads, as the round's final fit does (a worker would first
    import the model's libraries again, and one thread would leave cores idle)."""
    if len(tasks) <= 1:
        return [fit_fold(model, params, fold, alone=True) for params, fold in tasks]
    try:
        return list(tqdm(Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(fit_fold)(model, params, fold) for params, fold in tasks),
            total=len(tasks), desc=desc))
    finally:
        if n_jobs != 1:
            memory.stop_workers()


def search(model: Model, params: dict, rnd: Round) -> tuple[dict, dict]:
    """The params with the model's best values in this round, and what to record of it.

    Every candidate is trained and scored by :func:`soundclf.evaluation.fit.fit_predict`
    on each inner fold, ``tune.n_jobs`` fits at a time. With no candidates listed the params are
    returned unchanged.
    """
    tuned, chosen, _ = search_folds(model, params, rnd)
    return tuned, chosen


def search_folds(model: Model, params: dict, rnd: Round,
                 inner: dict[str, Round] | None = None
                 ) -> tuple[dict, dict, dict[str, RoundResult]]:
    """:func:`search`, and the chosen candidate's results on each inner fold (by fold
    name), which are out-of-fold predictions (:func:`out_of_fold`). ``inner``: the
    round's inner rounds (:func:`inner_rounds`) if already cut."""
    searched, tuning = grid(params, model), params["tune"]
    if not searched:
        return params, {}, {}
    if inner is None:
        inner = inner_rounds(rnd, params, None)
    inner = dict(list(inner.items())[:tuning["max_folds"]])
    candidates = combinations(searched)
    outcomes = fit_folds(model, [(with_values(params, model.section, values), fold)
                                 for values in candidates for fold in inner.values()],
                         tuning["n_jobs"], f"tune.{model.tune} in round {rnd.name}")
    scores = []
    for k, values in enumerate(candidates):
        results = outcomes[k * len(inner):(k + 1) * len(inner)]
        if failed := [r for r in results if isinstance(r, TrainingError)]:
            print(f"tune.{model.tune} {values}: {failed[0]}")
            scores.append(np.nan)
            continue
        scores.append(Scores.of(predictions_table(results)).mean[tuning["metric"]])
    if np.isnan(scores).all():
        raise TrainingError(f"every tune.{model.tune} candidate failed in round {rnd.name}")
    best = int(np.nanargmax(scores))
    print(f"tune.{model.tune} in round {rnd.name}: {candidates[best]} "
          f"({tuning['metric']} {scores[best]:.4f}, mean of {len(inner)} inner folds)")
    return (with_values(params, model.section, candidates[best]),
            {"tuned": candidates[best], f"tuned_{tuning['metric']}": float(scores[best])},
            dict(zip(inner, outcomes[best * len(inner):(best + 1) * len(inner)], strict=True)))


def oof_params(model: Model, params: dict) -> dict:
    """``params`` as an out-of-fold fit trains: a model trained by epochs (its tuned
    section has ``epochs``: the MLPs, the CNN) for ``oof.epochs`` of them (a fraction,
    rounded, at least one); every other model as ``params`` say."""
    share, section = params["oof"]["epochs"], model.section
    epochs = None if section is None else get_param(params, section).get("epochs")
    if share == 1 or epochs is None:
        return params
    return with_values(params, section, {"epochs": max(1, round(epochs * share))})


def out_of_fold(model: Model, params: dict, rnd: Round,
                known: dict[str, RoundResult] | None = None,
                inner: dict[str, Round] | None = None) -> pd.DataFrame:
    """Out-of-fold class probabilities of the round's training clips: what the ensemble
    learns its members' worth from.

    Each clip of the first ``oof.folds`` inner folds (the same folds as the search's: ESC-50's
    official folds, so a recording's clips stay together; 0: none) gets its probabilities
    from the model trained, as ``params`` say, on the other inner folds (a model trained by
    epochs for ``oof.epochs`` of them, :func:`oof_params`); the validation part is never
    read. ``known``: results on inner folds already trained with these ``params`` (the
    search's choice, :func:`search_folds`; all their epochs), not trained again; ``inner``:
    the round's inner rounds if already cut. A row per clip: ``filename``, ``fold`` (the
    inner fold) and one column per class of the round.
    """
    known = known or {}
    if inner is None:
        inner = inner_rounds(rnd, params, None)
    inner = dict(list(inner.items())[:params["oof"]["folds"]])
    todo = [name for name in inner if name not in known]
    trained = oof_params(model, params)
    fitted = fit_folds(model, [(trained, inner[name]) for name in todo],
                       params["tune"]["n_jobs"], f"out-of-fold in round {rnd.name}")
    results = {**known, **dict(zip(todo, fitted, strict=True))}
    classes = round_classes(rnd)
    parts = []
    for name in inner:
        if isinstance(results[name], TrainingError):
            raise TrainingError(f"out-of-fold training on inner fold {name} of round "
                                f"{rnd.name}: {results[name]}")
        result = results[name]
        probs = pd.DataFrame(result.probabilities, columns=round_classes(result.round))
        parts.append(pd.concat([
            pd.DataFrame({"filename": result.round.rows("valid")["filename"].to_numpy(),
                          "fold": name}),
            probs.reindex(columns=classes, fill_value=0.0)], axis=1))
    if not parts:  # oof.folds: 0
        return pd.DataFrame(columns=["filename", "fold", *classes])
    return pd.concat(parts, ignore_index=True)
