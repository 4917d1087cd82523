"""The cost of a folder dataset's own stages (index, download) and of the stages after them
as it grows: a synthetic folder of N distinct short clips, timed by bench_pipeline.

    python scripts/bench_folder_scale.py N [--labels 50] [--seconds 0.5] [--workdir DIR]
        [--own-stages] [-- BENCH_PIPELINE_ARGS ...]

Writes ``N`` clips of ``--seconds`` (16 kHz mono PCM16 WAV, each its own seeded noise and
tone, so no two files are identical) as ``<label>/<k>.wav`` with a ``metadata.csv``
(``file_name``, ``label``, ``group``: four consecutive clips of a label share one), then
runs ``scripts/bench_pipeline.py DIR --folder`` with the arguments after ``--`` (e.g.
``--skip train-nn-2layer``); ``--own-stages`` runs only the folder kind's own stages,
``index`` and ``download``. A cost measurement only: the labels are arbitrary.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SR = 16000
LATER_STAGES = ("feature-extraction", "normalize", "train-svc", "train-nn-2layer",
                "train-nn-5layer", "weights", "embeddings", "train-pretrained",
                "ensemble-member", "train-ensemble", "details", "compare")


def write(root: Path, n: int, labels: int, seconds: float) -> None:
    rows = []
    t = np.arange(int(SR * seconds)) / SR
    for k in range(n):
        label = f"class {k % labels:02d}"
        rng = np.random.default_rng(k)
        y = 0.3 * np.sin(2 * np.pi * (200 + 40 * (k % labels)) * t) + 0.05 * rng.normal(size=t.size)
        name = f"{label}/{k:06d}.wav"
        (root / label).mkdir(parents=True, exist_ok=True)
        sf.write(root / name, y.astype(np.float32), SR, subtype="PCM_16")
        rows.append({"file_name": name, "label": label, "group": f"{label} rec {k // labels // 4}"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)


def main() -> None:
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=int)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--own-stages", action="store_true",
                        help="only index and download (every later stage skipped)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-folder-"))
    data = work / "recordings"
    if not (data / "metadata.csv").is_file():
        write(data, args.clips, args.labels, args.seconds)
    print(f"{args.clips} clips of {args.seconds} s, {args.labels} labels -> {data}", flush=True)
    script = Path(__file__).resolve().parent / "bench_pipeline.py"
    if args.own_stages:
        rest += [w for stage in LATER_STAGES for w in ("--skip", stage)]
    sys.exit(subprocess.call([sys.executable, str(script), str(data), "--folder",
                              "--workdir", str(work / "bench"), *rest]))


if __name__ == "__main__":
    main()
