"""Stage `train-svc`: a scikit-learn LinearSVC on the normalized features.

    python -m stages.train_svc NORMALIZED_PARQUET MODEL_JOBLIB METRICS_JSON PREDICTIONS_CSV

Settings from the `svc` section; the original run was ``LinearSVC(random_state=42,
max_iter=1000, dual=False)`` on unscaled features (``normalize.scaler: none``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import joblib
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from stages.evaluate import Split, TrainingError, write_results
from stages.io import write_with
from stages.params import ParamError, load_params


def make_svc(params: dict) -> LinearSVC:
    svc = params["svc"]
    return LinearSVC(C=svc["C"], max_iter=svc["max_iter"], dual=svc["dual"],
                     class_weight=None if svc["class_weight"] == "none" else "balanced",
                     random_state=params["seed"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("normalized", "model", "metrics", "predictions"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    try:
        model = make_svc(load_params())
        split = Split.load(args.normalized)
        split.check_finite()
        x_train, y_train = split.xy("train")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x_train, y_train)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            print(f"train-svc: LinearSVC did not converge in {model.max_iter} iterations; "
                  "the scores are those of the last iteration (raise svc.max_iter to go on)")
        predicted = model.predict(split.xy("valid")[0])
        metrics = write_results("LinearSVC", split, predicted, args.metrics, args.predictions)
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train-svc: {exc}")
    write_with(args.model, lambda tmp: joblib.dump(model, tmp))
    print(f"train-svc: accuracy {metrics['accuracy']:.4f} on {metrics['n_valid']} clips")


if __name__ == "__main__":
    main()
