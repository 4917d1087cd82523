"""Stage `feature-extraction`: the 2,474 audio features of every clip, in metadata order.

    python -m stages.feature_extraction DATASET RAW_DIR OUT_PARQUET METRICS_JSON SKIPPED_CSV

Writes one row per clip: the adapter's metadata columns (``filename``, ``label`` and the
split columns) followed by the feature columns of :func:`stages.audio.feature_names`.
Clips are processed in parallel (``features.n_jobs``) with a progress bar. A clip that
cannot be used (unreadable, empty, truncated, non-finite features) stops the stage with
every bad file listed (``features.on_error: fail``), or is left out and recorded in
SKIPPED_CSV (``skip``). METRICS_JSON counts the clips kept and skipped.
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
from stages.io import write_json, write_with
from stages.params import ParamError, load_params


class ExtractionError(RuntimeError):
    """One or more clips whose features could not be computed."""


def _safe_features(path: Path, fp: FeatureParams) -> np.ndarray | str:
    try:
        values = file_features(path, fp)
    except Exception as exc:  # reported with the file name below
        return f"{type(exc).__name__}: {exc}"
    if not np.all(np.isfinite(values)):
        return "non-finite feature values"
    return values


def extract_features(
    paths: list[Path], fp: FeatureParams, n_jobs: int, on_error: str = "fail"
) -> tuple[np.ndarray, dict[int, str]]:
    """A (clips, features) float32 matrix in the order of ``paths``, and the failures.

    Failures map the index in ``paths`` to the reason. With ``on_error="fail"`` any
    failure raises, listing them all; with ``"skip"`` their rows are NaN.
    """
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_safe_features)(p, fp) for p in paths
    )
    rows = list(tqdm(jobs, total=len(paths), desc="features", unit="clip"))
    errors = {i: r for i, r in enumerate(rows) if isinstance(r, str)}
    if errors and on_error == "fail":
        listing = "\n  ".join(f"{paths[i]}: {why}" for i, why in errors.items())
        raise ExtractionError(
            f"{len(errors)} of {len(paths)} clips failed (set features.on_error: skip to "
            f"leave them out):\n  {listing}"
        )
    values = np.full((len(paths), len(feature_names(fp))), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if i not in errors:
            values[i] = row
    return values, errors


def build_table(dataset: str, raw_dir: Path, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature table of the clips kept, and the table of skipped clips with reasons."""
    settings = params["features"]
    fp = FeatureParams.from_params(settings)
    adapter = adapter_for(dataset)
    meta = adapter.metadata(raw_dir)
    paths = [adapter.audio_path(raw_dir, f) for f in meta["filename"]]
    values, errors = extract_features(paths, fp, settings["n_jobs"], settings["on_error"])
    if len(errors) == len(meta):
        raise ExtractionError(f"all {len(meta)} clips failed, for example "
                              f"{paths[0]}: {errors[0]}")
    features = pd.DataFrame(values, columns=feature_names(fp), index=meta.index)
    table = pd.concat([meta, features], axis=1).drop(index=list(errors)).reset_index(drop=True)
    skipped = pd.DataFrame({"filename": meta.loc[list(errors), "filename"].to_numpy(),
                            "error": list(errors.values())})
    return table, skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path, help="clip counts (JSON)")
    parser.add_argument("skipped", type=Path, help="clips left out, with reasons (CSV)")
    args = parser.parse_args(argv)
    try:
        table, skipped = build_table(args.dataset, args.raw_dir, load_params())
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"feature-extraction {args.dataset}: {exc}")
    write_with(args.out, lambda tmp: table.to_parquet(tmp, index=False))
    write_with(args.skipped, lambda tmp: skipped.to_csv(tmp, index=False))
    write_json(args.metrics, {"clips": len(table), "skipped": len(skipped)})
    for row in skipped.itertuples():
        print(f"skipped {row.filename}: {row.error}")
    print(f"feature-extraction {args.dataset}: {len(table)} clips, {len(skipped)} skipped "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
