"""Stage `train-svc`: a scikit-learn LinearSVC on the normalized features.

    python -m stages.train_svc NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV

Settings from the `svc` section; the original run was ``LinearSVC(random_state=42,
max_iter=1000, dual=False)`` on unscaled features (``normalize.scaler: none``,
``svc.block_weights: none``, ``svc.C: 1``). By default each feature block is weighted
equally (:class:`BlockWeights`) and ``C`` is 0.1: see params.yaml. One model
is trained per evaluation round, with the values ``tune.svc`` chooses in it if set
(stages.tune); MODEL_JOBLIB is the primary round's.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from stages import tune
from stages.evaluate import RoundResult, Split, TrainingError, headline, train_rounds
from stages.io import write_with
from stages.params import ParamError, load_params


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


def make_svc(params: dict, features: list[str]) -> LinearSVC | Pipeline:
    """The LinearSVC of the ``svc`` section for these feature columns, unfitted."""
    svc = params["svc"]
    model = LinearSVC(C=svc["C"], max_iter=svc["max_iter"], dual=svc["dual"],
                      class_weight=None if svc["class_weight"] == "none" else "balanced",
                      random_state=params["seed"])
    if svc["block_weights"] == "none":
        return model
    return make_pipeline(BlockWeights([f.split("_", 1)[0] for f in features]), model)


def fit_predict(params: dict, split: Split) -> tuple[LinearSVC | Pipeline, RoundResult]:
    """A LinearSVC trained on the round's training part, and its validation predictions."""
    model = make_svc(params, split.features)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(*split.xy("train"))
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        print(f"train-svc: LinearSVC did not converge in {params['svc']['max_iter']} "
              f"iterations in round {split.name}; the scores are those of the last iteration "
              "(raise svc.max_iter)")
    return model, RoundResult(split, model.predict(split.xy("valid")[0]))


def tuned_fit_predict(params: dict, split: Split) -> tuple[LinearSVC | Pipeline, RoundResult]:
    """:func:`fit_predict` with the values ``tune.svc`` chooses in this round, if any."""
    tuned, chosen = tune.search("svc", params, split, lambda p, s: fit_predict(p, s)[1])
    model, result = fit_predict(tuned, split)
    result.extra.update(chosen)
    return model, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    try:
        params = load_params()
        model, metrics = train_rounds(
            "LinearSVC", args.normalized, lambda split, _: tuned_fit_predict(params, split),
            args.metrics, args.predictions,
        )
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train-svc: {exc}")
    write_with(args.model, lambda tmp: joblib.dump(model, tmp))  # the primary round's
    print(f"train-svc: {headline(metrics)}")


if __name__ == "__main__":
    main()
