"""Stage `weights`: a pretrained encoder's published checkpoint, fetched and verified.

    python -m stages.weights ENCODER OUT_FILE --cache CACHE_DIR

From ``weights.<ENCODER>.url``, checked against ``weights.<ENCODER>.sha256`` and loaded
strictly into the project's network before it becomes OUT_FILE
(soundclf.features.weights); CACHE_DIR keeps downloads, as for the datasets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.archive import DownloadError
from soundclf.features.encoders import WeightsError
from soundclf.features.weights import fetch_weights
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        source = fetch_weights(args.encoder, load_params(), args.out, args.cache)
    except (DownloadError, WeightsError, ParamError) as exc:
        sys.exit(f"weights {args.encoder}: {exc}")
    print(f"weights {args.encoder}: verified, from {source} -> {args.out}")


if __name__ == "__main__":
    main()
