"""Stage `train-ensemble`: its members' class probabilities, combined by learned weights.

    python -m stages.train_ensemble MEMBERS_DIR MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
                                    [--scores JSON]

MEMBERS_DIR holds ``<member>.parquet`` for every model of ``ensemble.members``, put there
by the ``ensemble-member`` stages; soundclf.evaluation.members fits and scores the
combination (soundclf.models.ensemble) in every round. The outputs are a model stage's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.evaluation.members import train_ensemble
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.scores import headline
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("members", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--scores", type=Path, help="the scores alone (what dvc metrics "
                        "show lists); METRICS gets every figure")
    args = parser.parse_args(argv)
    try:
        params = load_params()
        combination, metrics = train_ensemble(params, args.members, args.model, args.metrics,
                                              args.predictions, args.scores)
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train-ensemble: {exc}")
    weights = combination.described()
    print(f"train-ensemble ({params['ensemble']['combine']}: {weights}): {headline(metrics)}")


if __name__ == "__main__":
    main()
