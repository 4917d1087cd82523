"""Training a registered model on every evaluation round: what a ``train-<model>`` stage does.

In every round the model is trained with the values its ``tune`` grid chooses there
(soundclf.evaluation.tune), on the feature columns or on other inputs by clip (the CNN's
spectrograms, the pretrained model's embeddings), and scored on the round's validation
part. The primary round's model is saved as a soundclf.trained.Trained with the settings
its inputs were computed with (and normalize's scaler for a model of the feature
columns); with out-of-fold probabilities asked for, every round's class probabilities are
written as the table the ensemble learns from (:func:`probabilities_table`).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path

import joblib
import pandas as pd
from dvclive import Live
from joblib import effective_n_jobs

from soundclf import memory, models, trained
from soundclf.evaluation import tune
from soundclf.evaluation.fit import fit_memory, fit_predict, train_rounds
from soundclf.evaluation.rounds import Round, RoundResult, round_classes
from soundclf.io import atomic_dir, write_with
from soundclf.params import ParamError
from soundclf.table import PREFIX, InputsError, load_inputs


def fit_round(model: models.Model, params: dict, rnd: Round, curves: Path | None = None,
              inputs: tuple | None = None, out_of_fold: bool = False
              ) -> tuple[object, RoundResult]:
    """The model trained on one round with the values its search chooses there.

    With ``curves``, its per-epoch curves are logged by dvclive into that folder; with
    ``inputs`` (rows by filename, values, source), it reads those instead of the features.
    With ``out_of_fold``, the result's ``oof`` holds the training clips' out-of-fold
    probabilities (soundclf.evaluation.tune.out_of_fold), reusing the search's fits of its choice.
    """
    if inputs is not None:
        rnd = rnd.with_inputs(*inputs)
    # the inner folds, cut once for the search and the out-of-fold probabilities
    inner = tune.inner_rounds(rnd, params, None) if out_of_fold or tune.grid(params, model) \
        else None
    check_memory(model, params, rnd, inner, out_of_fold)
    tuned, chosen, known = tune.search_folds(model, params, rnd, inner)
    oof = tune.out_of_fold(model, tuned, rnd, known, inner) if out_of_fold else None
    estimator = model.build(tuned, rnd.features)
    if curves is None:
        fitted, result = fit_predict(estimator, rnd)
    else:
        with tempfile.TemporaryDirectory() as live_dir:
            with Live(dir=live_dir, dvcyaml=None, save_dvc_exp=False) as live:
                fitted, result = fit_predict(estimator, rnd, live)
            shutil.copytree(Path(live_dir) / "plots" / "metrics", curves, dirs_exist_ok=True)
    result.extra.update(chosen)
    result.oof = oof
    return fitted, result


def check_memory(model: models.Model, params: dict, rnd: Round,
                 inner: dict[str, Round] | None, out_of_fold: bool = True) -> None:
    """Refuse the round before any training if its fits would not fit in memory.

    The inner fits of a phase (the search's, then the out-of-fold ones it did not train),
    when there are two or more, run up to ``tune.n_jobs`` at once in worker processes,
    each holding about what this process holds (the libraries, the round's data) plus its
    fit's own memory (soundclf.evaluation.fit.fit_memory); the workers are stopped when
    their fits are done. A lone inner fit, and the round's final fit, run here.
    """
    x, y = rnd.xy("train")
    estimator = model.build(params, rnd.features)
    per_fit = fit_memory(estimator, x, y)
    at_once = max(tune.inner_fits(model, params, len(inner or {}), out_of_fold))
    workers = min(effective_n_jobs(params["tune"]["n_jobs"]), at_once) if at_once > 1 else 0
    lower = "tune.n_jobs" + (f" or {model.section}.batch_size"
                             if hasattr(estimator, "batch_size") else "")
    memory.check_fits(max(workers * (memory.rss() + per_fit), per_fit),
                      f"training {model.name} in round {rnd.name} ({workers} fits at once in "
                      "worker processes, tune.n_jobs, or one here)", lower)


def probabilities_table(results: list[RoundResult]) -> pd.DataFrame:
    """The class probabilities a model gave in every round, what the ensemble reads: a row
    per training clip (out of fold, with its inner ``fold``) and per validation clip (from
    the round's model), with ``round``, ``split``, ``filename``, ``label``, and a column
    ``p_<class>`` per class."""
    parts = []
    for r in results:
        labels = r.round.table.set_index("filename")["label"]
        classes = [f"{PREFIX}{c}" for c in round_classes(r.round)]
        oof = r.oof.rename(columns=dict(zip(round_classes(r.round), classes, strict=True)))
        valid = pd.DataFrame(r.probabilities, columns=classes).assign(
            filename=r.round.rows("valid")["filename"].to_numpy(), fold="")
        for split, rows in (("train", oof), ("valid", valid)):
            parts.append(rows.assign(round=r.round.name, split=split,
                                     label=labels.loc[rows["filename"]].to_numpy()))
    table = pd.concat(parts, ignore_index=True)
    meta = ["round", "split", "filename", "label", "fold"]
    return table[meta + [c for c in table.columns if c not in meta]]


def read_scaler(path: Path):
    """normalize's scaler (``--scaler``), before any training: refused naming the file if it
    is missing or holds no transformer."""
    try:
        scaler = joblib.load(path)
    except Exception as exc:  # missing, truncated or foreign: pickle raises many kinds
        raise InputsError(f"{path} is not normalize's scaler ({type(exc).__name__}: {exc}): "
                          "rerun normalize (dvc repro)") from None
    if not hasattr(scaler, "transform"):
        raise InputsError(f"{path} holds a {type(scaler).__name__}, not normalize's scaler: "
                          "rerun normalize (dvc repro)")
    return scaler


def train_model(model_name: str, params: dict, normalized: Path, model_path: Path,
                metrics_path: Path, predictions_path: Path, *, curves: Path | None = None,
                inputs: Path | None = None, probabilities: Path | None = None,
                scaler: Path | None = None, scores: Path | None = None,
                weights: Path | None = None) -> tuple[str, dict]:
    """A model stage's work: registered model ``model_name`` trained and scored on every
    round of ``normalized``, its results written (soundclf.evaluation.scores.write_results)
    and the primary round's model saved to ``model_path`` (soundclf.trained). Returns the
    model's description and its metrics.

    ``inputs``: the model's inputs by clip, for a model of other inputs than the feature
    columns; ``scaler``: normalize's, saved with a model of the feature columns;
    ``curves``: a folder for the primary round's per-epoch curves; ``probabilities``: a
    parquet for every round's class probabilities (:func:`probabilities_table`);
    ``weights``: its encoder's weights folder, for a model that reads them
    (``Model.reads_weights``: the zero-shot model's text tower).
    """
    model = models.get(model_name)
    if model.reads_weights != (weights is not None):
        raise ParamError(f"model {model.name} " + (
            f"reads {model.encoder}'s weights: give their folder with --weights"
            if model.reads_weights else "takes no --weights"))
    if weights is not None:
        model = dataclasses.replace(model, build=functools.partial(model.build,
                                                                   weights=str(weights)))
    if model.inputs == "probabilities":
        raise ParamError(f"model {model.name} combines the other models' probabilities: "
                         "its stage is stages.train_ensemble")
    name = model.describe(params)
    if (model.inputs != "features") != (inputs is not None):
        raise ParamError(f"model {model.name} reads {model.inputs}: "
                         + ("give them with --inputs" if inputs is None
                            else "it takes no --inputs"))
    if scaler is not None and model.inputs != "features":
        raise ParamError(f"model {model.name} reads {model.inputs}: it takes no --scaler")
    fitted_scaler = None if scaler is None else read_scaler(scaler)
    by_clip = None if inputs is None else (*load_inputs(inputs), str(inputs))
    with atomic_dir(curves) if curves else nullcontext() as curves_dir:
        fitted, metrics, results = train_rounds(  # curves: the primary round's
            name, normalized,
            lambda rnd, primary: fit_round(model, params, rnd,
                                           curves_dir if primary else None, by_clip,
                                           out_of_fold=probabilities is not None),
            metrics_path, predictions_path, scores)
    saved = trained.Trained(
        model.name, fitted, [str(c) for c in round_classes(results[0].round)], model.inputs,
        trained.input_settings(model.inputs, params, model.encoder), scaler=fitted_scaler)
    if probabilities is not None:
        table = probabilities_table(results)
        write_with(probabilities, lambda tmp: table.to_parquet(tmp, index=False))
        saved.probabilities = trained.fingerprint(probabilities)
    trained.save(model_path, saved)
    return name, metrics
