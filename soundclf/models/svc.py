"""LinearSVC on the normalized features (the ``svc`` section).

The original run was ``LinearSVC(random_state=42, max_iter=1000, dual=False)`` on
unscaled features (``normalize.scaler: none``, ``svc.block_weights: none``, ``svc.C: 1``).
By default each feature block is weighted equally (:class:`BlockWeights`) and ``C`` is
0.1: see params.yaml.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from soundclf.models import Model
from soundclf.table import block_of


class BlockWeights(TransformerMixin, BaseEstimator):
    """Weight each feature block (STFT, mel, CQT) by 1/sqrt(its number of features).

    On standardized features the 2,050 STFT statistics would outweigh the 256 mel and 168
    CQT ones eight to one in the margin and in the L2 penalty; weighted, every block has
    a total variance of one, so a clip's squared norm is about 3 whatever the block sizes,
    and ``svc.C`` means the same whatever the feature settings. (Only the LinearSVC gets
    this: the fastai MLPs normalize their inputs themselves, and their batch norm's running
    variance, starting at 1, would take long to reach 1/2050.)
    """

    def __init__(self, blocks: list[str] | None = None):
        self.blocks = blocks  # the block of every column, e.g. ["stft", ..., "cqt"]

    def fit(self, X, y=None) -> BlockWeights:
        blocks = np.asarray(self.blocks)
        if len(blocks) != np.shape(X)[1]:
            raise ValueError(f"{len(blocks)} block names for {np.shape(X)[1]} columns")
        sizes = {b: int((blocks == b).sum()) for b in set(blocks)}
        self.weights_ = np.array([1 / np.sqrt(sizes[b]) for b in blocks])
        return self

    def transform(self, X) -> np.ndarray:
        return np.asarray(X) * self.weights_


def build(params: dict, features: list[str]) -> LinearSVC | Pipeline:
    """The LinearSVC of the ``svc`` section for these feature columns, unfitted."""
    svc = params["svc"]
    model = LinearSVC(C=svc["C"], max_iter=svc["max_iter"], dual=svc["dual"],
                      class_weight=None if svc["class_weight"] == "none" else "balanced",
                      random_state=params["seed"])
    if svc["block_weights"] == "none":
        return model
    return make_pipeline(BlockWeights([block_of(f) for f in features]), model)


MODELS = [Model("svc", "LinearSVC", params=("seed", "svc"), build=build, tune="svc")]
