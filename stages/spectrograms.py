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

import numpy as np

from soundclf.data.audio import LogMelParams
from soundclf.data.datasets import LayoutError
from soundclf.features.extraction import ExtractionError, compute_dataset
from soundclf.params import ParamError, load_params
from soundclf.table import save_inputs


def run(dataset: str, raw_dir: Path, params: dict, out: Path, cache_dir: Path) -> list[str]:
    """The whole stage; returns the filenames left out (``features.on_error: skip``)."""
    recipe = LogMelParams.from_params(params["spectrograms"])
    done = compute_dataset(dataset, raw_dir, recipe, cache_dir, params["features"])
    save_inputs(out, done.filenames(), np.stack(done.values()).astype(np.float16))
    return done.skipped()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="per-clip cache")
    args = parser.parse_args(argv)
    try:
        skipped = run(args.dataset, args.raw_dir, load_params(), args.out, args.cache)
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"spectrograms {args.dataset}: {exc}")
    for name in skipped:
        print(f"skipped {name}")
    print(f"spectrograms {args.dataset}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
