"""Stage `train-svc`: a scikit-learn LinearSVC on the normalized features.

    python -m stages.train_svc NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV

Settings from the `svc` section; the original run was ``LinearSVC(random_state=42,
max_iter=1000, dual=False)`` on unscaled features (``normalize.scaler: none``). One model
is trained per evaluation round, with the values ``tune.svc`` chooses in it if set
(stages.tune); MODEL_JOBLIB is the primary round's.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import joblib
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from stages import tune
from stages.evaluate import RoundResult, Split, TrainingError, headline, train_rounds
from stages.io import write_with
from stages.params import ParamError, load_params


def make_svc(params: dict) -> LinearSVC:
    svc = params["svc"]
    return LinearSVC(C=svc["C"], max_iter=svc["max_iter"], dual=svc["dual"],
                     class_weight=None if svc["class_weight"] == "none" else "balanced",
                     random_state=params["seed"])


def fit_predict(params: dict, split: Split) -> tuple[LinearSVC, RoundResult]:
    """A LinearSVC trained on the round's training part, and its validation predictions."""
    model = make_svc(params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(*split.xy("train"))
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        print(f"train-svc: LinearSVC did not converge in {model.max_iter} iterations in round "
              f"{split.name}; the scores are those of the last iteration (raise svc.max_iter)")
    return model, RoundResult(split, model.predict(split.xy("valid")[0]))


def tuned_fit_predict(params: dict, split: Split) -> tuple[LinearSVC, RoundResult]:
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
