"""Stage `train-ensemble`: a soft vote of the calibrated probabilities of chosen models.

    python -m stages.train_ensemble NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV
        [--member-metrics MODEL_METRICS_JSON ...]

The members (``ensemble.members``: svc, nn-2layer, nn-5layer) are built with the settings
of their own stages. Each is wrapped in scikit-learn's ``CalibratedClassifierCV``
(``ensemble.calibration``): trained on ``calibration_folds`` - 1 folds of the round's
training part and calibrated on the fold it did not see, the fold models' probabilities
averaged. Calibration needs predictions on clips a model was not trained on, which the
member stages' models (trained on the whole training part) cannot give, so the members are
trained anew here. A ``VotingClassifier`` then averages the members' calibrated
probabilities (soft vote) and predicts the most probable class. Calibration folds, like
early stopping's carved set, keep the clips of one recording (``src_file``) together.

With a search grid (``tune.svc``, ``tune.nn``), each member takes the values its own stage
chose in the same round, read from that stage's metrics (``--member-metrics``), instead of
searching again.

Metrics and predictions are written like every model's (stages.evaluate), one ensemble per
evaluation round, with each calibrated member's accuracy beside the ensemble's;
MODEL_JOBLIB is the primary round's ``VotingClassifier``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import StratifiedGroupKFold

from stages import tune
from stages.evaluate import RoundResult, Split, TrainingError, headline, train_rounds
from stages.io import write_with
from stages.params import ParamError, load_params
from stages.train_nn import LAYERS_KEYS, TabularNN, nn_settings
from stages.train_svc import make_svc


def member(name: str, params: dict) -> ClassifierMixin:
    """The model of the stage ``name`` (svc, nn-2layer, nn-5layer), unfitted."""
    if name == "svc":
        return make_svc(params)
    return TabularNN(nn_settings(params, LAYERS_KEYS[name])).set_fit_request(groups=True)


def fit_ensemble(params: dict, split: Split, tuned: dict[str, dict] | None = None
                 ) -> VotingClassifier:
    """The soft-voting ensemble of calibrated members, fitted on the round's training part.

    ``tuned`` maps a member to the values its stage's search chose in this round.
    Calibration folds group clips by ``src_file`` where the dataset has it.
    """
    tuned = tuned or {}
    settings = params["ensemble"]
    train = split.table[~split.is_valid]
    groups = train["src_file"].to_numpy() if "src_file" in train else np.arange(len(train))
    folds = StratifiedGroupKFold(settings["calibration_folds"], shuffle=True,
                                 random_state=params["seed"])
    with sklearn.config_context(enable_metadata_routing=True):  # groups -> folds and NNs
        ensemble = VotingClassifier(
            [(name, CalibratedClassifierCV(member(name, tune.with_values(
                params, tune.SECTIONS[name], tuned.get(name, {}))),
                                           method=settings["calibration"], cv=folds))
             for name in settings["members"]],
            voting="soft",
        )
        return ensemble.fit(*split.xy("train"), groups=groups)


def check_probabilities(probs: np.ndarray, model: str) -> None:
    """Refuse probabilities that are not finite, outside [0, 1] or not summing to 1."""
    sums = probs.sum(axis=1)
    if not (np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
            and np.allclose(sums, 1, atol=1e-5)):
        raise TrainingError(f"{model} gave invalid class probabilities (row sums "
                            f"{sums.min():.6f} to {sums.max():.6f}, min {probs.min():.6f})")


def fit_predict(params: dict, split: Split, tuned: dict[str, dict] | None = None
                ) -> tuple[VotingClassifier, RoundResult]:
    """The fitted ensemble of one round and its validation predictions and figures."""
    ensemble = fit_ensemble(params, split, tuned)
    x_valid, y_valid = split.xy("valid")
    probs = ensemble.predict_proba(x_valid)
    check_probabilities(probs, "the ensemble")
    predicted = ensemble.classes_[probs.argmax(axis=1)]
    extra = {}
    for name, calibrated in ensemble.named_estimators_.items():
        member_probs = calibrated.predict_proba(x_valid)
        check_probabilities(member_probs, f"member {name}")
        member_predicted = ensemble.le_.inverse_transform(member_probs.argmax(axis=1))
        extra[f"accuracy_{name}"] = float((member_predicted == y_valid).mean())
    return ensemble, RoundResult(split, predicted, extra)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--member-metrics", type=Path, nargs="*", default=[],
                        help="the member stages' metrics (their stem the model), for what "
                             "their tune search chose")
    args = parser.parse_args(argv)
    try:
        params = load_params()
        searched = [m for m in params["ensemble"]["members"]
                    if tune.grid(params, tune.SECTIONS[m])]
        sources = {path.stem: path for path in args.member_metrics}
        if missing := [m for m in searched if m not in sources or not sources[m].is_file()]:
            files = ", ".join(str(sources.get(m, f"no --member-metrics file for {m}"))
                              for m in missing)
            raise TrainingError(f"what tune chose for {', '.join(missing)} is read from the "
                                f"member stages' metrics, missing: {files} (dvc repro runs "
                                "those stages first)")
        records = {m: json.loads(sources[m].read_text()) for m in searched}

        def fit(split: Split, _: bool) -> tuple[VotingClassifier, RoundResult]:
            return fit_predict(params, split, {
                m: tune.chosen_in(records[m], split.name, str(sources[m])) for m in searched})

        model, metrics = train_rounds("the ensemble", args.normalized, fit, args.metrics,
                                      args.predictions)
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train-ensemble: {exc}")
    write_with(args.model, lambda tmp: joblib.dump(model, tmp))  # the primary round's
    members = " + ".join(params["ensemble"]["members"])
    print(f"train-ensemble ({members}): {headline(metrics)}")


if __name__ == "__main__":
    main()
