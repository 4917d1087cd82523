"""The ensemble (the ``ensemble`` section): its members' class probabilities, combined with
weights learned on clips the members did not train on.

Every model stage writes the class probabilities its model gives in each evaluation round
(stages.train ``--probabilities``): the validation clips' from the round's model, and the
training clips' out of fold, each from a model trained without the clip's inner fold
(soundclf.evaluation.tune.out_of_fold).
A :class:`Combination` of ``ensemble.members`` is fitted on a
round's out-of-fold rows only and applied to its validation rows, so the validation part
never teaches it anything. ``ensemble.combine``:

- ``weighted``: a weighted geometric pool, ``p(c) ∝ prod_m p_m(c) ** w_m``, the weights
  ``w_m >= 0`` minimizing the log loss of the out-of-fold probabilities (with an L2 term of
  ``L2`` so that equal members share equally). A weight is at once the member's worth and
  its temperature: a member that adds nothing gets about 0, and a strong member's vote is
  not diluted by weak ones.
- ``vote``: the plain soft vote, the mean of the members' probabilities as their stages
  give them (LinearSVC's: the softmax of its decision values); nothing is learned.

Any registered model can be a member: what it read (features, spectrograms, embeddings)
is behind its probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from soundclf import models
from soundclf.evaluation.probabilities import TrainingError, check_probabilities
from soundclf.params import ParamError

EPS = 1e-12  # probabilities are clipped here before their log: a 0 costs log(EPS)
L2 = 1e-4  # on the weights: identical members get identical weights


def pool_loss(w: np.ndarray, logs: np.ndarray, targets: np.ndarray
              ) -> tuple[float, np.ndarray]:
    """The mean log loss of the pool ``softmax(sum_m w_m logs[:, m])`` plus ``L2 / 2 |w|^2``,
    and its gradient. ``logs``: (clips, members, classes) log-probabilities; ``targets``:
    each clip's class index."""
    truth = logs[np.arange(len(logs)), :, targets]  # (clips, members): log p_m(true class)
    pooled = np.einsum("m,nmc->nc", w, logs)
    norm = logsumexp(pooled, axis=1)
    probs = np.exp(pooled - norm[:, None])
    expected = np.einsum("nc,nmc->nm", probs, logs)  # E_pool[log p_m], clip by clip
    return (float(np.mean(norm - truth @ w) + L2 / 2 * w @ w),
            np.mean(expected - truth, axis=0) + L2 * w)


def fit_weights(logs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Non-negative weights minimizing :func:`pool_loss` (convex in them): L-BFGS-B from
    equal weights of 1 / members."""
    n_members = logs.shape[1]
    found = minimize(pool_loss, np.full(n_members, 1 / n_members), args=(logs, targets),
                     jac=True, method="L-BFGS-B", bounds=[(0, None)] * n_members)
    if not np.isfinite(found.fun):
        raise TrainingError(f"the ensemble's weights did not converge ({found.message})")
    return found.x


class Combination(ClassifierMixin, BaseEstimator):
    """``members``' class probabilities combined as ``combine`` says (the module's text).

    X is (clips, members, classes): each member's probabilities of every class of
    ``classes`` (sorted), in the order of ``members``.
    """

    def __init__(self, members: list[str], combine: str = "weighted"):
        self.members = members
        self.combine = combine

    def fit(self, X, y, classes=None) -> Combination:
        X = self._check(X)
        self.classes_ = np.unique(y) if classes is None else np.asarray(classes)
        if unknown := set(np.unique(y)) - set(self.classes_):
            raise ValueError(f"labels {sorted(unknown)} are not among the classes")
        targets = np.searchsorted(self.classes_, y)
        # vote: every weight 1, the pool's formula then the mean of the probabilities
        self.weights_ = fit_weights(np.log(np.clip(X, EPS, 1)), targets) \
            if self.combine == "weighted" else np.ones(len(self.members))
        return self

    def _check(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 3 or X.shape[1] != len(self.members):
            raise ValueError(f"expected (clips, {len(self.members)} members, classes) "
                             f"probabilities, got shape {X.shape}")
        return X

    def predict_proba(self, X) -> np.ndarray:
        logs = np.log(np.clip(self._check(X), EPS, 1))
        if self.combine == "weighted":
            probs = softmax(np.einsum("m,nmc->nc", self.weights_, logs), axis=1)
        else:
            probs = softmax(self.weights_[None, :, None] * logs, axis=2).mean(axis=1)
        check_probabilities(probs, "the ensemble")
        return probs

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def described(self) -> dict[str, float]:
        """The weights by member (``vote``: all 1)."""
        return {m: round(float(w), 4) for m, w in zip(self.members, self.weights_, strict=True)}


def check_members(params: dict) -> list[str]:
    """``ensemble.members``, each a registered model other than the ensemble."""
    names = params["ensemble"]["members"]
    for name in names:
        if models.get(name).name == "ensemble":  # an unknown name stops in models.get
            raise ParamError("'ensemble.members' cannot include the ensemble itself")
    return names


def build(params: dict, features: list[str] | None = None) -> Combination:
    """The combination of ``ensemble.members``; it reads their probabilities, not
    ``features``."""
    return Combination(check_members(params), params["ensemble"]["combine"])


MODELS = [models.Model("ensemble", "Ensemble", params=("ensemble",), build=build,
                       inputs="probabilities",
                       architecture=lambda params: " + ".join(params["ensemble"]["members"]))]
