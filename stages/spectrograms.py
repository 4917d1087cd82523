"""Stage `spectrograms`: every clip's log-mel spectrogram, for models that read time.

    python -m stages.spectrograms DATASET RAW_DIR OUT_NPZ --cache CACHE_DIR

The same clips, audio loading, per-clip cache and parallel backend as
`feature-extraction` (``features.n_jobs``, ``batch_size``, ``backend``, ``scheduler``,
``on_error``), with the values of the ``spectrograms`` section: ``power_to_db(
melspectrogram(y, sr, n_fft, hop_length, n_mels), ref=max)`` of the first ``duration``
seconds, zero-padded (soundclf.data.audio.LogMelParams). OUT_NPZ holds ``filename`` (metadata
order, skipped clips left out) and ``values``, float16 (clips, n_mels, frames): 2,000
ESC-50 clips at the defaults are 55 MB. The feature table is not touched.
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
