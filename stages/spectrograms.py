"""Stage `spectrograms`: every clip's log-mel spectrogram, for models that read time.

    python -m stages.spectrograms DATASET RAW_DIR OUT_NPZ --cache CACHE_DIR

OUT_NPZ holds ``filename`` and ``values`` (float16, clips x n_mels x frames) of the
``spectrograms`` section (soundclf.features.spectrograms); CACHE_DIR keeps each clip's
between runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.datasets import LayoutError
from soundclf.features.extraction import ExtractionError
from soundclf.features.spectrograms import write_spectrograms
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="per-clip cache")
    args = parser.parse_args(argv)
    try:
        skipped = write_spectrograms(args.dataset, args.raw_dir, load_params(), args.out,
                                     args.cache)
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"spectrograms {args.dataset}: {exc}")
    for name in skipped:
        print(f"skipped {name}")
    print(f"spectrograms {args.dataset}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
