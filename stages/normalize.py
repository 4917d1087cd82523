"""Stage `normalize`: assign the train/valid split and scale features, fitted on train only.

    python -m stages.normalize DATASET FEATURES_PARQUET OUT_PARQUET SCALER_JOBLIB

Adds a ``split`` column (``train`` / ``valid``, from the dataset's split params) and
writes the scaled table and the fitted scaler, so a trained model can be applied to the
features of new clips. ``normalize.scaler: none`` keeps the raw features (the original
configuration) and saves an identity transformer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

from stages.audio import feature_columns
from stages.datasets import adapter_for
from stages.io import write_with
from stages.params import SCALERS, ParamError, load_params

SCALER_CLASSES = {
    "none": FunctionTransformer,
    "standard": StandardScaler,
    "minmax": MinMaxScaler,
    "robust": RobustScaler,
}
assert set(SCALER_CLASSES) == set(SCALERS)


def make_scaler(name: str) -> TransformerMixin:
    return SCALER_CLASSES[name]()


def normalize(
    table: pd.DataFrame, is_valid: np.ndarray, scaler_name: str
) -> tuple[pd.DataFrame, TransformerMixin]:
    """The table with a ``split`` column and scaled features, and the fitted scaler."""
    features = feature_columns(list(table.columns))
    is_valid = np.asarray(is_valid, dtype=bool)
    if is_valid.all() or not is_valid.any():
        raise ParamError(
            f"the split leaves {'no training' if is_valid.all() else 'no validation'} clips"
        )
    scaler = make_scaler(scaler_name)
    scaler.fit(table.loc[~is_valid, features].to_numpy())
    scaled = scaler.transform(table[features].to_numpy()).astype(np.float32)
    out = table.drop(columns=features)
    out["split"] = np.where(is_valid, "valid", "train")
    out = pd.concat([out, pd.DataFrame(scaled, columns=features, index=table.index)], axis=1)
    return out, scaler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("features", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("scaler_out", type=Path)
    args = parser.parse_args(argv)
    try:
        params = load_params()
        scaler_name = params["normalize"]["scaler"]
        table = pd.read_parquet(args.features)
        is_valid = adapter_for(args.dataset).validation_mask(table, params)
        out, scaler = normalize(table, is_valid, scaler_name)
    except ParamError as exc:
        sys.exit(f"normalize {args.dataset}: {exc}")
    write_with(args.out, lambda tmp: out.to_parquet(tmp, index=False))
    write_with(args.scaler_out, lambda tmp: joblib.dump(scaler, tmp))
    n_valid = int(is_valid.sum())
    print(f"normalize {args.dataset}: {scaler_name} scaler, "
          f"{len(out) - n_valid} train / {n_valid} valid -> {args.out}")


if __name__ == "__main__":
    main()
