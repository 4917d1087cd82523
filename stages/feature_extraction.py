"""Stage `feature-extraction`: the 2,474 audio features of every clip, in metadata order.

    python -m stages.feature_extraction DATASET RAW_DIR OUT_PARQUET METRICS_JSON SKIPPED_CSV
                                        --cache CACHE_DIR

Writes one row per clip: the adapter's metadata columns (``filename``, ``label`` and the
split columns) followed by the feature columns of :func:`soundclf.data.audio.feature_names`.

Clips are computed in batches of ``features.batch_size`` (one CQT set-up per batch) by
``features.n_jobs`` parallel workers, on this machine (``features.backend: local``) or on a
Dask cluster (``dask``, at ``features.scheduler``). Each clip's features are kept in
CACHE_DIR under the hash of its audio and of the feature params, so a rerun computes only
clips it has not seen (new clips, or all of them after a feature param changed), and an
interrupted run resumes. The table is written in chunks from the cache, so memory stays
bounded by the batch, not the dataset.

A clip that cannot be used (unreadable, empty, truncated, non-finite features) stops the
stage with every bad file listed (``features.on_error: fail``), or is left out and recorded
in SKIPPED_CSV (``skip``). METRICS_JSON counts the clips kept and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.datasets import LayoutError
from soundclf.features.extraction import ExtractionError
from soundclf.features.summary import write_features
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path, help="clip counts (JSON)")
    parser.add_argument("skipped", type=Path, help="clips left out, with reasons (CSV)")
    parser.add_argument("--cache", type=Path, required=True, help="per-clip feature cache")
    args = parser.parse_args(argv)
    try:
        skipped = write_features(args.dataset, args.raw_dir, load_params(), args.out, args.metrics,
                      args.skipped, args.cache)
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"feature-extraction {args.dataset}: {exc}")
    for row in skipped.itertuples():
        print(f"skipped {row.filename}: {row.error}")
    print(f"feature-extraction {args.dataset}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
