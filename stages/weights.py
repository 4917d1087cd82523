"""Stage `weights`: fetch a pretrained encoder's published checkpoint and verify it.

    python -m stages.weights ENCODER OUT_FILE --cache CACHE_DIR

``weights.<ENCODER>.url`` is where the weights are published (for ``aisfx``, its wheel on
PyPI, which holds them as ``aisfx/models/checkpoint.pth``), a ``file://`` URL or a local
path to that archive or to the checkpoint itself; downloads are kept in CACHE_DIR like the
datasets'. The checkpoint must have the SHA-256 ``weights.<ENCODER>.sha256`` and load
strictly into this project's network (soundclf.features.encoders) before it becomes OUT_FILE.
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
