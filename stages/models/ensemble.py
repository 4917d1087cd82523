"""A soft vote of calibrated members (the ``ensemble`` section).

The members (``ensemble.members``, any registered models) are built from their own
sections. Each is wrapped in scikit-learn's ``CalibratedClassifierCV``
(``ensemble.calibration``): trained on ``calibration_folds`` - 1 folds of the training
part and calibrated on the fold it did not see, the fold models' probabilities averaged.
Calibration needs predictions on clips a model was not trained on, which the member
stages' models (trained on the whole training part) cannot give, so the members are
trained anew here. A ``VotingClassifier`` then averages the members' calibrated
probabilities (soft vote). Calibration folds keep the clips of one recording (``groups``)
together and put a class with fewer recordings than folds on the training side of every
fold (stages.folds), so each fold's members know every class.

A member that reads other inputs than the feature columns (the CNN: log-mel spectrograms)
joins through the ensemble's X: the feature columns followed by each clip's inputs,
flattened (``input_shape`` per clip); every member reads its own columns (``Columns``).
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.utils.metaestimators import available_if

from stages import models
from stages.evaluate import TrainingError, fit_offering, one_thread
from stages.folds import class_folds
from stages.params import ParamError, with_values


class AllClasses(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """``estimator`` answering for every class of ``classes``, including ones it never saw.

    The calibration folds already give every fold's training side every class
    (stages.folds); this is the guard behind that: a member that still lacked one would
    give one column fewer than the others and the calibrated probabilities could not be
    averaged. A class missing from the training clips gets a decision value far below
    every other (``UNSEEN_MARGIN`` under the row's minimum), or a probability of 0 for a
    member without decision values, and every member's columns follow ``classes``.
    """

    UNSEEN_MARGIN = 50.0

    def __init__(self, estimator: ClassifierMixin, classes: np.ndarray):
        self.estimator = estimator
        self.classes = classes

    def fit(self, X, y, groups=None) -> AllClasses:
        self.classes_ = np.asarray(self.classes)
        if unknown := set(np.unique(y)) - set(self.classes_):
            raise ValueError(f"labels {sorted(unknown)} are not among the classes")
        with one_thread():  # the same fit whether ensemble.n_jobs runs members at once
            self.estimator_ = fit_offering(clone(self.estimator), X, y, groups=groups)
        self.columns_ = np.searchsorted(self.classes_, self.estimator_.classes_)
        return self

    @available_if(lambda self: hasattr(self.estimator, "decision_function"))
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

    # a member without decision values (k-NN, a forest) is calibrated from its probabilities
    @available_if(lambda self: not hasattr(self.estimator, "decision_function")
                  and hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """The estimator's probabilities, 0 for a class it never saw."""
        out = np.zeros((len(X), len(self.classes_)))
        out[:, self.columns_] = self.estimator_.predict_proba(X)
        return out

    def predict(self, X) -> np.ndarray:
        if hasattr(self, "decision_function"):
            scores = self.decision_function(X)
            if scores.ndim == 1:
                return self.classes_[(scores > 0).astype(int)]
        else:
            scores = self.predict_proba(X)
        return self.classes_[scores.argmax(axis=1)]


class Columns(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """``estimator`` reading columns ``start:stop`` of X, each row reshaped to ``shape``
    (None: kept flat): one member's inputs in an ensemble's joined X."""

    def __init__(self, estimator: ClassifierMixin, start: int, stop: int | None = None,
                 shape: tuple[int, ...] | None = None):
        self.estimator = estimator
        self.start = start
        self.stop = stop
        self.shape = shape

    def _x(self, X) -> np.ndarray:
        x = np.asarray(X)[:, self.start:self.stop]
        return x if self.shape is None else x.reshape(len(x), *self.shape)

    def fit(self, X, y, groups=None) -> Columns:
        self.estimator_ = fit_offering(clone(self.estimator), self._x(X), y,
                                       groups=groups)
        self.classes_ = self.estimator_.classes_
        return self

    @available_if(lambda self: hasattr(self.estimator, "decision_function"))
    def decision_function(self, X) -> np.ndarray:
        return self.estimator_.decision_function(self._x(X))

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        return self.estimator_.predict_proba(self._x(X))

    def predict(self, X) -> np.ndarray:
        return self.estimator_.predict(self._x(X))


def check_probabilities(probs: np.ndarray, model: str) -> None:
    """Refuse probabilities that are not finite, outside [0, 1] or not summing to 1."""
    sums = probs.sum(axis=1)
    if not (np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
            and np.allclose(sums, 1, atol=1e-5)):
        raise TrainingError(f"{model} gave invalid class probabilities (row sums "
                            f"{sums.min():.6f} to {sums.max():.6f}, min {probs.min():.6f})")


class CalibratedVote(ClassifierMixin, BaseEstimator):
    """The soft vote of ``members`` (``(name, unfitted estimator)`` pairs), each calibrated."""

    def __init__(self, members: list | None = None, calibration: str = "temperature",
                 calibration_folds: int = 3, seed: int = 42, n_jobs: int = 1):
        self.members = members
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.seed = seed
        self.n_jobs = n_jobs  # members trained at a time (joblib)

    def fit(self, X, y, groups=None) -> CalibratedVote:
        folds = class_folds(y, groups, self.calibration_folds, self.seed,
                            param="ensemble.calibration_folds", where="the training part")
        classes = np.arange(len(np.unique(y)))  # VotingClassifier label-encodes y for members
        with sklearn.config_context(enable_metadata_routing=True):  # groups -> the NNs
            self.vote_ = VotingClassifier(
                [(name, CalibratedClassifierCV(
                    AllClasses(member, classes).set_fit_request(groups=True),
                    method=self.calibration, cv=folds)) for name, member in self.members],
                voting="soft", n_jobs=self.n_jobs,
            ).fit(X, y, groups=np.arange(len(y)) if groups is None else groups)
        self.classes_ = self.vote_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        probs = self.vote_.predict_proba(X)
        check_probabilities(probs, "the ensemble")
        return probs

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def member_accuracy(self, X, y) -> dict[str, float]:
        """Each calibrated member's accuracy on ``X, y``: ``{"accuracy_svc": ...}``."""
        found = {}
        for name, calibrated in self.vote_.named_estimators_.items():
            probs = calibrated.predict_proba(X)
            check_probabilities(probs, f"member {name}")
            predicted = self.vote_.le_.inverse_transform(probs.argmax(axis=1))
            found[f"accuracy_{name}"] = float((predicted == np.asarray(y)).mean())
        return found


def build(params: dict, features: list[str], tuned: dict[str, dict] | None = None,
          input_shape: tuple[int, ...] | None = None) -> CalibratedVote:
    """The ensemble of ``ensemble.members``, each built from its own params section.

    ``tuned`` maps a member to the values its stage's search chose (in its ``tune``
    section); the members' sections must be in ``params`` too. ``input_shape``: a clip's
    other inputs (a spectrogram's bands and frames) when a member reads them; X is then
    the feature columns followed by those inputs, flattened.
    """
    section, tuned = params["ensemble"], tuned or {}
    reading = {name: models.get(name).inputs for name in section["members"]
               if models.get(name).inputs != "features"}
    if len(set(reading.values())) > 1:
        listing = ", ".join(f"{name} reads {kind}" for name, kind in reading.items())
        raise ParamError(f"'ensemble.members': {listing}; the ensemble takes one kind of "
                         "other inputs (--inputs) besides the features")
    members = []
    for name in section["members"]:
        model = models.get(name)
        if model.name == "ensemble":
            raise ParamError("'ensemble.members' cannot include the ensemble itself")
        member_params = with_values(params, model.section, tuned[name]) if name in tuned \
            else params
        member = model.build(member_params, features)
        if model.inputs != "features":
            if input_shape is None:
                raise ParamError(f"'ensemble.members': {name} reads {model.inputs}: give "
                                 f"train-ensemble its stage's --inputs file (README: the "
                                 f"CNN in the ensemble)")
            member = Columns(member, len(features), None, tuple(input_shape))
        elif input_shape is not None:
            member = Columns(member, 0, len(features))
        members.append((name, member))
    return CalibratedVote(members, section["calibration"], section["calibration_folds"],
                          params["seed"], section["n_jobs"])


MODELS = [models.Model("ensemble", "Ensemble", params=("seed", "ensemble"), build=build,
                       architecture=lambda params: " + ".join(params["ensemble"]["members"]))]
