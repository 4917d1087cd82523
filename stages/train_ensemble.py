"""Stage `train-ensemble`: a soft vote of the calibrated probabilities of chosen models.

    python -m stages.train_ensemble NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
        [--member-metrics MODEL_METRICS_JSON ...] [--inputs NPZ]

The ensemble (stages.models.ensemble) is trained and scored like every model, once per
evaluation round, with each calibrated member's accuracy beside the ensemble's;
MODEL_JOBLIB is the primary round's. With a search grid set for a member (``tune.svc``,
``tune.nn``), the member takes the values its own stage chose in the same round, read from
that stage's metrics (``--member-metrics``, named ``<member>.json``), instead of searching
again. A member that reads other inputs than the features (the CNN) takes them from
``--inputs`` (its own stage's file), after the features in the ensemble's X
(stages.models.ensemble); the default dvc.yaml gives none (README: the CNN in the ensemble).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib

from stages import models, tune
from stages.evaluate import RoundResult, TrainingError, fit_predict, headline, train_rounds
from stages.io import write_with
from stages.models.ensemble import CalibratedVote
from stages.models.ensemble import build as build_ensemble
from stages.params import ParamError, load_params
from stages.table import InputsError, Round, load_inputs


def fit_round(params: dict, rnd: Round, tuned: dict[str, dict] | None = None,
              inputs: tuple | None = None) -> tuple[CalibratedVote, RoundResult]:
    """The ensemble of one round (members with the ``tuned`` values their stages chose).

    ``inputs`` (rows by filename, values, source): other inputs that a member reads, joined
    after the features.
    """
    shape = None
    if inputs is not None:
        rnd, shape = rnd.with_inputs(*inputs, after_features=True), inputs[1].shape[1:]
    fitted, result = fit_predict(build_ensemble(params, rnd.features, tuned, shape), rnd)
    result.extra.update(fitted.member_accuracy(*rnd.xy("valid")))
    return fitted, result


def read_member_choices(params: dict, paths: list[Path]) -> dict[str, dict]:
    """The metrics of every member whose stage searched a grid, by member name.

    An unknown member stops here, before any training (stages.models.get names the known).
    """
    searched = [m for m in params["ensemble"]["members"] if tune.grid(params, models.get(m))]
    sources = {path.stem: path for path in paths}
    if missing := [m for m in searched if m not in sources or not sources[m].is_file()]:
        files = ", ".join(str(sources.get(m, f"no --member-metrics file for {m}"))
                          for m in missing)
        raise TrainingError(f"what tune chose for {', '.join(missing)} is read from the "
                            f"member stages' metrics, missing: {files} (dvc repro runs "
                            "those stages first)")
    return {m: (str(sources[m]), json.loads(sources[m].read_text())) for m in searched}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--member-metrics", type=Path, nargs="*", default=[],
                        help="the member stages' metrics (their stem the model), for what "
                             "their tune search chose")
    parser.add_argument("--inputs", type=Path, help="other inputs by clip (NPZ) for a member "
                        "that does not read the feature columns (the CNN's spectrograms)")
    args = parser.parse_args(argv)
    try:
        params = load_params()
        records = read_member_choices(params, args.member_metrics)
        reading = [m for m in params["ensemble"]["members"]
                   if models.get(m).inputs != "features"]
        inputs = None
        if reading and args.inputs is not None:  # without, build names what is missing
            inputs = (*load_inputs(args.inputs), str(args.inputs))
        elif args.inputs is not None:  # a dvc.yaml set up for the CNN, members without it
            print(f"train-ensemble: no member reads {args.inputs}; not used")

        def fit(rnd: Round, _: bool) -> tuple[CalibratedVote, RoundResult]:
            return fit_round(params, rnd, {m: tune.chosen_in(record, rnd.name, source)
                                           for m, (source, record) in records.items()},
                             inputs)

        model, metrics = train_rounds("the ensemble", args.normalized, fit, args.metrics,
                                      args.predictions)
    except (ParamError, TrainingError, InputsError) as exc:
        sys.exit(f"train-ensemble: {exc}")
    write_with(args.model, lambda tmp: joblib.dump(model, tmp))  # the primary round's
    members = " + ".join(params["ensemble"]["members"])
    print(f"train-ensemble ({members}): {headline(metrics)}")


if __name__ == "__main__":
    main()
