"""Stage `feature-extraction`: the 2,474 audio features of every clip, in metadata order.

    python -m stages.feature_extraction DATASET RAW_DIR OUT_PARQUET

Writes one row per clip: the adapter's metadata columns (``filename``, ``label`` and the
split columns) followed by the feature columns of :func:`stages.audio.feature_names`.
Clips are processed in parallel (``features.n_jobs``) with a progress bar; every clip that
fails is reported, not only the first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from stages.audio import FeatureParams, feature_names, file_features
from stages.datasets import LayoutError, adapter_for
from stages.io import write_with
from stages.params import ParamError, check, get, load_params, positive_number


class ExtractionError(RuntimeError):
    """One or more clips whose features could not be computed."""


def feature_params(params: dict) -> FeatureParams:
    for key in ("sr", "n_fft", "hop_length", "n_mels", "cqt_bins"):
        positive_number(params, f"features.{key}", integer=True)
    positive_number(params, "features.duration")
    n_jobs = get(params, "features.n_jobs")
    check(isinstance(n_jobs, int) and n_jobs != 0, "features.n_jobs",
          f"must be a non-zero integer (-1 = all cores), got {n_jobs!r}")
    return FeatureParams.from_params(params["features"])


def _safe_features(path: Path, fp: FeatureParams) -> np.ndarray | str:
    try:
        values = file_features(path, fp)
    except Exception as exc:  # reported with the file name below
        return f"{type(exc).__name__}: {exc}"
    if not np.all(np.isfinite(values)):
        return "non-finite feature values"
    return values


def extract_features(paths: list[Path], fp: FeatureParams, n_jobs: int) -> np.ndarray:
    """A (clips, features) float32 matrix, rows in the order of ``paths``."""
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_safe_features)(p, fp) for p in paths
    )
    rows = list(tqdm(jobs, total=len(paths), desc="features", unit="clip"))
    errors = [f"{p}: {r}" for p, r in zip(paths, rows, strict=True) if isinstance(r, str)]
    if errors:
        raise ExtractionError(
            f"{len(errors)} of {len(paths)} clips failed:\n  " + "\n  ".join(errors)
        )
    return np.vstack(rows).astype(np.float32) if rows else np.empty((0, 0), np.float32)


def build_table(dataset: str, raw_dir: Path, params: dict) -> pd.DataFrame:
    fp = feature_params(params)
    adapter = adapter_for(dataset)
    meta = adapter.metadata(raw_dir)
    paths = [adapter.audio_path(raw_dir, f) for f in meta["filename"]]
    values = extract_features(paths, fp, params["features"]["n_jobs"])
    features = pd.DataFrame(values, columns=feature_names(fp), index=meta.index)
    return pd.concat([meta, features], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        table = build_table(args.dataset, args.raw_dir, load_params())
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"feature-extraction {args.dataset}: {exc}")
    write_with(args.out, lambda tmp: table.to_parquet(tmp, index=False))
    print(f"feature-extraction {args.dataset}: {table.shape[0]} clips -> {args.out}")


if __name__ == "__main__":
    main()
