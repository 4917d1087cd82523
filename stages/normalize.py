"""Stage `normalize`: the evaluation rounds of a dataset, each with its features scaled by a
scaler fitted on its training clips only.

    python -m stages.normalize DATASET FEATURES_PARQUET OUT_PARQUET SCALER_JOBLIB

OUT_PARQUET holds every round's scaled copy of the table (``round`` and ``split``
columns, the primary round first; soundclf.features.scaling); SCALER_JOBLIB is the
primary round's scaler, saved with the models for predict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib
import pandas as pd

from soundclf.data.datasets import LayoutError, adapter_for
from soundclf.features.scaling import (
    normalize_rounds,
    untrained_classes,
)
from soundclf.io import write_with
from soundclf.params import ParamError, load_params


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
        rounds = adapter_for(args.dataset, params).rounds(table, params)
        out, scaler = normalize_rounds(table, rounds, scaler_name)
    except (ParamError, LayoutError) as exc:
        sys.exit(f"normalize {args.dataset}: {exc}")
    write_with(args.out, lambda tmp: out.to_parquet(tmp, index=False))
    write_with(args.scaler_out, lambda tmp: joblib.dump(scaler, tmp))
    for name, is_valid in rounds.items():
        print(f"normalize {args.dataset}: round {name}: {scaler_name} scaler, "
              f"{len(table) - is_valid.sum()} train / {is_valid.sum()} valid")
        if unseen := untrained_classes(table["label"], is_valid):
            print(f"normalize {args.dataset}: round {name}: class(es) with validation clips "
                  f"but no training clips, scored as errors (no model can predict them): "
                  f"{', '.join(unseen)}")
    print(f"normalize {args.dataset}: {len(rounds)} round(s) -> {args.out}")


if __name__ == "__main__":
    main()
