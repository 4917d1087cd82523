"""Stage `train-<model>`: train and score one registered model on every evaluation round.

    python -m stages.train MODEL NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
                           [--curves DIR] [--inputs NPZ] [--probabilities PARQUET]
                           [--scaler JOBLIB] [--scores JSON]

MODEL is a name in the model registry (soundclf.models). It is trained and scored on every
evaluation round of the normalized table (soundclf.evaluation), with the values its ``tune``
grid chooses in that round. A model of other inputs than the feature columns (the CNN's
spectrograms, the pretrained model's embeddings) reads them from ``--inputs``. MODEL_JOBLIB
is the primary round's fitted model as a soundclf.trained.Trained (what predict reads),
with normalize's ``--scaler`` for a model of the feature columns; ``--curves`` gets that
round's per-epoch curves (dvclive), ``--probabilities`` every round's class probabilities
(the training clips' out of fold: what the ensemble learns from).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import joblib
import pandas as pd
from dvclive import Live

from soundclf import models, trained
from soundclf.evaluation import tune
from soundclf.evaluation.evaluate import (
    RoundResult,
    fit_predict,
    headline,
    round_classes,
    train_rounds,
)
from soundclf.evaluation.probabilities import TrainingError
from soundclf.io import atomic_dir, write_with
from soundclf.params import ParamError, load_params
from soundclf.table import PREFIX, InputsError, Round, load_inputs


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_name", metavar="model")
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--curves", type=Path, help="folder for the primary round's "
                        "per-epoch curves (models that train by epochs)")
    parser.add_argument("--inputs", type=Path, help="the model's inputs by clip (NPZ), for "
                        "a model that does not read the feature columns")
    parser.add_argument("--probabilities", type=Path, help="parquet for the class "
                        "probabilities of every round, out of fold for the training clips "
                        "(the ensemble's inputs)")
    parser.add_argument("--scores", type=Path, help="the scores alone (what dvc metrics "
                        "show lists); METRICS gets every figure")
    parser.add_argument("--scaler", type=Path, help="normalize's scaler of the primary "
                        "round, saved with a model of the feature columns")
    args = parser.parse_args(argv)
    stage = f"train-{args.model_name}"
    try:
        params = load_params()
        model = models.get(args.model_name)
        if model.inputs == "probabilities":
            raise ParamError(f"model {model.name} combines the other models' probabilities: "
                             "its stage is stages.train_ensemble")
        name = model.describe(params)
        if (model.inputs != "features") != (args.inputs is not None):
            raise ParamError(f"model {model.name} reads {model.inputs}: "
                             + ("give them with --inputs" if args.inputs is None
                                else "it takes no --inputs"))
        if args.scaler is not None and model.inputs != "features":
            raise ParamError(f"model {model.name} reads {model.inputs}: it takes no --scaler")
        scaler = None if args.scaler is None else read_scaler(args.scaler)
        inputs = None if args.inputs is None else (*load_inputs(args.inputs), str(args.inputs))
        with atomic_dir(args.curves) if args.curves else nullcontext() as curves:
            fitted, metrics, results = train_rounds(  # curves: the primary round's
                name, args.normalized,
                lambda rnd, primary: fit_round(model, params, rnd,
                                               curves if primary else None, inputs,
                                               out_of_fold=args.probabilities is not None),
                args.metrics, args.predictions, args.scores)
    except (ParamError, TrainingError, InputsError) as exc:
        sys.exit(f"{stage}: {exc}")
    saved = trained.Trained(
        model.name, fitted, [str(c) for c in round_classes(results[0].round)], model.inputs,
        trained.input_settings(model.inputs, params),
        scaler=scaler)
    if args.probabilities is not None:
        table = probabilities_table(results)
        write_with(args.probabilities, lambda tmp: table.to_parquet(tmp, index=False))
        saved.probabilities = trained.fingerprint(args.probabilities)
    trained.save(args.model, saved)
    print(f"{stage} ({name}): {headline(metrics)}")


if __name__ == "__main__":
    main()
