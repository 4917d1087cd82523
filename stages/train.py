"""Stage `train-<model>`: train and score one registered model on every evaluation round.

    python -m stages.train MODEL NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
                           [--curves DIR] [--inputs NPZ]

MODEL is a name in the model registry (stages.models: svc, nn-2layer, nn-5layer, cnn...).
One model is trained per evaluation round of the normalized table (stages.evaluate), with
the values its ``tune`` grid chooses in that round if one is set (stages.tune), and scored
on the round's validation part. A model that reads other inputs than the feature columns
(the CNN: log-mel spectrograms) takes them from ``--inputs`` (stages.spectrograms's file),
clip by clip, with the rounds of the normalized table. MODEL_JOBLIB is the primary round's
fitted estimator; with ``--curves``, that round's per-epoch curves (dvclive) are written to
DIR.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import joblib
from dvclive import Live

from stages import models, tune
from stages.evaluate import RoundResult, TrainingError, fit_predict, headline, train_rounds
from stages.io import atomic_dir, write_with
from stages.params import ParamError, load_params
from stages.table import InputsError, Round, load_inputs


def fit_round(model: models.Model, params: dict, rnd: Round, curves: Path | None = None,
              inputs: tuple | None = None) -> tuple[object, RoundResult]:
    """The model trained on one round with the values its search chooses there.

    With ``curves``, its per-epoch curves are logged by dvclive into that folder; with
    ``inputs`` (rows by filename, values, source), it reads those instead of the features.
    """
    if inputs is not None:
        rnd = rnd.with_inputs(*inputs)
    tuned, chosen = tune.search(model, params, rnd)
    estimator = model.build(tuned, rnd.features)
    if curves is None:
        fitted, result = fit_predict(estimator, rnd)
    else:
        with tempfile.TemporaryDirectory() as live_dir:
            with Live(dir=live_dir, dvcyaml=None, save_dvc_exp=False) as live:
                fitted, result = fit_predict(estimator, rnd, live)
            shutil.copytree(Path(live_dir) / "plots" / "metrics", curves, dirs_exist_ok=True)
    result.extra.update(chosen)
    return fitted, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_name", metavar="model")
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--curves", type=Path, help="folder for the primary round's "
                        "per-epoch curves (models that train by epochs)")
    parser.add_argument("--inputs", type=Path, help="the model's inputs by clip (NPZ), for "
                        "a model that does not read the feature columns")
    args = parser.parse_args(argv)
    stage = f"train-{args.model_name}"
    try:
        params = load_params()
        model = models.get(args.model_name)
        name = model.describe(params)
        if (model.inputs != "features") != (args.inputs is not None):
            raise ParamError(f"model {model.name} reads {model.inputs}: "
                             + ("give them with --inputs" if args.inputs is None
                                else "it takes no --inputs"))
        inputs = None if args.inputs is None else (*load_inputs(args.inputs), str(args.inputs))
        with atomic_dir(args.curves) if args.curves else nullcontext() as curves:
            fitted, metrics = train_rounds(  # curves: the primary round's
                name, args.normalized,
                lambda rnd, primary: fit_round(model, params, rnd,
                                               curves if primary else None, inputs),
                args.metrics, args.predictions)
    except (ParamError, TrainingError, InputsError) as exc:
        sys.exit(f"{stage}: {exc}")
    write_with(args.model, lambda tmp: joblib.dump(fitted, tmp))
    print(f"{stage} ({name}): {headline(metrics)}")


if __name__ == "__main__":
    main()
