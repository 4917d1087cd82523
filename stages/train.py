"""Stage `train-<model>`: one registered model trained and scored on every evaluation round.

    python -m stages.train MODEL NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
                           [--curves DIR] [--inputs NPZ] [--probabilities PARQUET]
                           [--scaler JOBLIB] [--scores JSON] [--weights DIR]

MODEL is a name in the model registry (soundclf.models); soundclf.evaluation.train does
the work. METRICS_JSON gets every figure, ``--scores`` the scores alone, PREDICTIONS_CSV
the validation predictions, MODEL_JOBLIB the primary round's model (soundclf.trained);
``--inputs`` is the model's inputs for a model of other inputs than the feature columns,
``--scaler`` normalize's for one of them, ``--curves`` a folder for its per-epoch curves,
``--probabilities`` a parquet for the class probabilities the ensemble learns from,
``--weights`` the encoder's weights folder for a model that reads them (zero-shot).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.scores import headline
from soundclf.evaluation.train import train_model
from soundclf.params import ParamError, load_params
from soundclf.table import InputsError


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
    parser.add_argument("--weights", type=Path, help="its encoder's weights folder (stage "
                        "weights), for a model that reads them: the zero-shot model")
    args = parser.parse_args(argv)
    stage = f"train-{args.model_name}"
    try:
        name, metrics = train_model(
            args.model_name, load_params(), args.normalized, args.model, args.metrics,
            args.predictions, curves=args.curves, inputs=args.inputs,
            probabilities=args.probabilities, scaler=args.scaler, scores=args.scores,
            weights=args.weights)
    except (ParamError, TrainingError, InputsError) as exc:
        sys.exit(f"{stage}: {exc}")
    print(f"{stage} ({name}): {headline(metrics)}")


if __name__ == "__main__":
    main()
