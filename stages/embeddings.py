"""Stage `embeddings`: every clip's embedding by one pretrained encoder.

    python -m stages.embeddings DATASET ENCODER RAW_DIR WEIGHTS_DIR OUT_NPZ --cache CACHE_DIR

ENCODER is one of ``embeddings.encoders``, WEIGHTS_DIR its weights (stage `weights`),
with the ``embeddings`` section's settings; OUT_NPZ holds ``filename`` and
``values``, a row per clip (soundclf.features.embeddings); CACHE_DIR keeps each clip's
window embeddings between runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.datasets import LayoutError
from soundclf.features.embeddings import write_embeddings
from soundclf.features.encoders import WeightsError
from soundclf.features.extraction import ExtractionError
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("encoder")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("weights", type=Path, help="the encoder's weights (stage weights)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="per-clip cache")
    args = parser.parse_args(argv)
    try:
        skipped = write_embeddings(args.dataset, args.encoder, args.raw_dir, args.weights,
                                   load_params(), args.out, args.cache)
    except (ExtractionError, LayoutError, ParamError, WeightsError) as exc:
        sys.exit(f"embeddings {args.dataset} {args.encoder}: {exc}")
    for name in skipped:
        print(f"skipped {name}")
    print(f"embeddings {args.dataset} {args.encoder}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
