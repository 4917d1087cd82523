"""Stage `download`: a dataset's archives fetched, verified, extracted and checked.

    python -m stages.download DATASET OUT_DIR DATASET_METRICS_JSON --cache CACHE_DIR

OUT_DIR is replaced only once the whole dataset is in place (soundclf.data.download);
DATASET_METRICS_JSON gets its clip and class counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.archive import DownloadError
from soundclf.data.datasets import LayoutError
from soundclf.data.download import download
from soundclf.io import write_json
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics", type=Path, help="dataset counts (JSON)")
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        counts = download(args.dataset, load_params(), args.out_dir, args.cache)
    except (DownloadError, LayoutError, ParamError) as exc:
        kept = "" if args.out_dir.exists() else (
            f" (if an earlier dvc repro made {args.out_dir}, DVC keeps it in its cache: "
            f"dvc checkout download@{args.dataset} brings it back)")
        sys.exit(f"download {args.dataset}: {exc}{kept}")
    write_json(args.metrics, counts)
    print(f"download {args.dataset}: {counts['clips_listed']} clips listed, "
          f"{counts['clips_used']} used ({counts['clips_excluded']} excluded), "
          f"{counts['classes']} classes -> {args.out_dir}")


if __name__ == "__main__":
    main()
