"""Stage `embeddings`: every clip's pretrained embedding, pooled over its windows.

    python -m stages.embeddings DATASET RAW_DIR WEIGHTS OUT_NPZ --cache CACHE_DIR

The ``embeddings`` section names the encoder (soundclf.features.encoders, with WEIGHTS from the
stage `weights`, checked against ``weights.<encoder>.sha256``). Each clip is read whole,
whatever its length, cut into the encoder's windows every ``hop`` of a window (a clip
shorter than one window is zero-padded to one), and every window embedded: the windows
are cut by the same parallel workers, per-clip cache and backend as the other extraction
stages (``features.n_jobs``, ``batch_size``, ``backend``, ``scheduler``, ``on_error``);
the network runs in this process, ``batch_size`` windows at a time, on ``device``. The
cache keeps each clip's window embeddings, so a new ``pooling`` recomputes nothing.
A window's embedding is the output of each network block in ``blocks`` (averaged over
bands, maximized over frames: 256 values for aisfx's third block, 512 for its fourth).
OUT_NPZ holds ``filename`` (metadata order, skipped clips left out) and ``values``,
float32 (clips, len(pooling) x the window embedding's size): each statistic of
``pooling`` (mean, max, std) over a clip's windows, in that order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.datasets import LayoutError
from soundclf.features.embeddings import write_embeddings
from soundclf.features.encoders import (
    WeightsError,
)
from soundclf.features.extraction import ExtractionError
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("weights", type=Path, help="the encoder's checkpoint (stage weights)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="per-clip cache")
    args = parser.parse_args(argv)
    try:
        skipped = write_embeddings(args.dataset, args.raw_dir, args.weights, load_params(),
                                   args.out, args.cache)
    except (ExtractionError, LayoutError, ParamError, WeightsError) as exc:
        sys.exit(f"embeddings {args.dataset}: {exc}")
    for name in skipped:
        print(f"skipped {name}")
    print(f"embeddings {args.dataset}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
