"""Stage `feature-extraction`: the 2,474 summary features of every clip, in metadata order.

    python -m stages.feature_extraction DATASET RAW_DIR OUT_PARQUET METRICS_JSON SKIPPED_CSV
                                        --cache CACHE_DIR

OUT_PARQUET gets a row per clip, its metadata columns then its features
(soundclf.features.summary); SKIPPED_CSV the clips left out with ``features.on_error:
skip``, and why; METRICS_JSON the counts. CACHE_DIR keeps each clip's features between
runs.
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
