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
from inspect import signature
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier

from stages import tune
from stages.evaluate import RoundResult, Split, TrainingError, headline, train_rounds
from stages.folds import class_folds, recording_groups
from stages.io import write_with
from stages.params import ParamError, load_params
from stages.train_nn import LAYERS_KEYS, TabularNN, nn_settings
from stages.train_svc import make_svc


class AllClasses(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """``estimator`` answering for every class of ``classes``, including ones it never saw.

    The calibration folds already give every fold's training side every class
    (stages.folds); this is the guard behind that: a member that still lacked one would
    give one column fewer than the others and the calibrated probabilities could not be
    averaged. A class missing from the training clips gets a decision value far below
    every other (``UNSEEN_MARGIN`` under the row's minimum), and every member's columns
    follow ``classes``.
    """

    UNSEEN_MARGIN = 50.0

    def __init__(self, estimator: ClassifierMixin, classes: np.ndarray):
        self.estimator = estimator
        self.classes = classes

    def fit(self, X, y, groups=None) -> AllClasses:
        self.classes_ = np.asarray(self.classes)
        if unknown := set(np.unique(y)) - set(self.classes_):
            raise ValueError(f"labels {sorted(unknown)} are not among the classes")
        self.estimator_ = clone(self.estimator)
        extra = {} if groups is None or "groups" not in signature(
            self.estimator_.fit).parameters else {"groups": groups}
        self.estimator_.fit(X, y, **extra)
        self.columns_ = np.searchsorted(self.classes_, self.estimator_.classes_)
        return self

    def decision_function(self, X) -> np.ndarray:
        seen = self.estimator_.decision_function(X)
        if seen.ndim == 1:  # a binary estimator: one column, for its second class
            seen = np.stack([-seen, seen], axis=1)
        out = np.full((len(seen), len(self.classes_)), np.nan)
        out[:, self.columns_] = seen
        floor = seen.min(axis=1, keepdims=True) - self.UNSEEN_MARGIN
        out = np.where(np.isnan(out), floor, out)
        # two classes: one column, for the second, as scikit-learn's binary classifiers give
        return (out[:, 1] - out[:, 0]) / 2 if len(self.classes_) == 2 else out

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]


def member(name: str, params: dict, features: list[str], classes: np.ndarray
           ) -> ClassifierMixin:
    """The model of the stage ``name`` (svc, nn-2layer, nn-5layer), unfitted, answering for
    every class in ``classes``."""
    if name == "svc":
        model = make_svc(params, features)
    else:
        model = TabularNN(nn_settings(params, LAYERS_KEYS[name]))
    return AllClasses(model, classes).set_fit_request(groups=True)


def fit_ensemble(params: dict, split: Split, tuned: dict[str, dict] | None = None
                 ) -> VotingClassifier:
    """The soft-voting ensemble of calibrated members, fitted on the round's training part.

    ``tuned`` maps a member to the values its stage's search chose in this round.
    Calibration folds (``ensemble.calibration_folds``, stages.folds) keep the clips of one
    ``src_file`` together and put a class with fewer recordings than folds on the
    training side of every fold, so each fold's members know every class.
    """
    tuned = tuned or {}
    settings = params["ensemble"]
    train = split.table[~split.is_valid]
    x_train, y_train = split.xy("train")
    groups = recording_groups(train)
    folds = class_folds(train["label"], groups, settings["calibration_folds"], params["seed"],
                        param="ensemble.calibration_folds", where=f"round {split.name}")
    classes = np.arange(len(np.unique(y_train)))  # VotingClassifier label-encodes y for members
    with sklearn.config_context(enable_metadata_routing=True):  # groups -> the NNs
        ensemble = VotingClassifier(
            [(name, CalibratedClassifierCV(member(name, tune.with_values(
                params, tune.SECTIONS[name], tuned.get(name, {})), split.features, classes),
                                           method=settings["calibration"], cv=folds))
             for name in settings["members"]],
            voting="soft",
        )
        return ensemble.fit(x_train, y_train, groups=groups)


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
