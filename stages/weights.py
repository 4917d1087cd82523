"""Stage `weights`: a pretrained encoder's published weights, fetched and verified.

    python -m stages.weights ENCODER OUT_DIR --cache CACHE_DIR

From ``weights.<ENCODER>`` (a checkpoint's url, or a Hub repository), checked against
``weights.<ENCODER>.sha256`` and loaded into the network before they become the folder
OUT_DIR (soundclf.features.weights); CACHE_DIR keeps downloads, as for the datasets.
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
    parser.add_argument("out", type=Path, help="the weights folder to write")
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        source = fetch_weights(args.encoder, load_params(), args.out, args.cache)
    except (DownloadError, WeightsError, ParamError) as exc:
        sys.exit(f"weights {args.encoder}: {exc}")
    print(f"weights {args.encoder}: verified, from {source} -> {args.out}")


if __name__ == "__main__":
    main()
