"""Benchmark the pipeline's feature extractor against the original one-clip-at-a-time loop.

    python scripts/bench_features.py data/raw/esc50/ESC-50-master/audio --limit 400
    python scripts/bench_features.py a.wav b.wav --n-jobs 2 --batch-size 32

Both run on the same clips in the same process run, each after a warm-up (librosa's JIT
compilation, the worker pool start-up). Prints clips/s of each and their ratio, the peak
memory of each (resident memory of this process and its workers above the level before
the run), and the largest difference per feature block between the two. The extractor
is measured without the per-clip cache (that would measure disk reads, not compute).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import librosa
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.peak_memory import PeakMemory, tree_rss  # noqa: E402
from soundclf.features.summary import (  # noqa: E402
    SummaryFeatures,
    extract_features,  # noqa: E402
    feature_names,
)


def naive_features(path: str) -> np.ndarray:
    """The original analysis' code: one clip at a time, defaults as it ran them."""
    y, sr = librosa.load(path, sr=44100, duration=5)
    if len(y) < 220500:
        y = np.pad(y, (0, 220500 - len(y)))
    stft = np.abs(librosa.stft(y))
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128)
    mel_db = librosa.power_to_db(mel, ref=np.max)
    cqt = np.abs(librosa.cqt(y, sr=sr))
    return np.concatenate([
        np.mean(stft, axis=1), np.std(stft, axis=1),
        np.mean(mel_db, axis=1), np.std(mel_db, axis=1),
        np.mean(cqt, axis=1), np.std(cqt, axis=1),
    ])


def measure(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, int]:
    """Run ``run``; returns its result, the seconds it took and its peak extra memory."""
    baseline = tree_rss()
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    return result, seconds, memory.peak - baseline


def block_differences(ours: np.ndarray, ref: np.ndarray, names: list[str]) -> list[str]:
    lines = []
    for block in ("stft", "mel", "cqt"):
        cols = [i for i, n in enumerate(names) if n.startswith(f"{block}_")]
        a, b = ours[:, cols].astype(np.float64), ref[:, cols].astype(np.float64)
        absolute = np.abs(a - b)
        relative = absolute / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
        lines.append(f"  {block:5s} max relative {relative.max():.2e}   "
                     f"max absolute {absolute.max():.2e}")
    return lines


def audio_files(inputs: list[Path], limit: int | None) -> list[str]:
    files = []
    for item in inputs:
        files += sorted(str(p) for p in item.rglob("*.wav")) if item.is_dir() else [str(item)]
    if not files:
        sys.exit(f"no .wav files in {', '.join(map(str, inputs))}")
    return files[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files or folders")
    parser.add_argument("--limit", type=int, default=None, help="use the first N clips")
    parser.add_argument("--n-jobs", type=int, default=-1, help="extractor workers")
    parser.add_argument("--batch-size", type=int, default=32, help="extractor batch")
    args = parser.parse_args()
    paths = audio_files(args.inputs, args.limit)
    fp = SummaryFeatures()
    names = feature_names(fp)

    def pipeline(clips: list[str]) -> np.ndarray:
        return extract_features(clips, fp, args.n_jobs, batch_size=args.batch_size)[0]

    print(f"{len(paths)} clips; warming up (JIT compilation, worker start-up)")
    for path in paths[:2]:
        naive_features(path)
    pipeline(paths[: min(len(paths), 2 * args.batch_size)])

    ref, naive_s, naive_mem = measure(lambda: np.stack([naive_features(p) for p in paths]))
    ours, ours_s, ours_mem = measure(lambda: pipeline(paths))
    naive_rate, ours_rate = len(paths) / naive_s, len(paths) / ours_s
    print(f"naive loop : {naive_rate:7.1f} clips/s   peak memory +{naive_mem / 2**20:6.0f} MB")
    print(f"pipeline   : {ours_rate:7.1f} clips/s   peak memory +{ours_mem / 2**20:6.0f} MB   "
          f"({joblib.cpu_count() if args.n_jobs < 0 else args.n_jobs} workers, "
          f"batches of {args.batch_size})")
    print(f"ratio      : {ours_rate / naive_rate:.2f}x the naive loop")
    print("differences from the naive loop, per block:")
    print("\n".join(block_differences(ours, ref, names)))


if __name__ == "__main__":
    main()
