"""Write small synthetic datasets in the exact ESC-50 and FSDKaggle2019 archive layouts.

    python scripts/make_demo_data.py esc50 demo/ESC-50-master.zip [--classes 5] [--per-fold 2]
    python scripts/make_demo_data.py freesound demo/ [--classes 5] [--per-class 12]

Each class is a clearly different synthetic sound (its own pitch, harmonics, tremolo rate
and noise colour), so a working pipeline separates them easily; clips are 5-second
44.1 kHz PCM16 mono WAVs, five folds, with ``meta/esc50.csv`` as in the real archive. Use
it to try the pipeline without the 600 MB download:

    dvc exp run -S data.esc50.url=demo/ESC-50-master.zip

The FreeSound layout is Zenodo's: ``FSDKaggle2019.audio_train_curated.zip`` (WAVs of 0.3 to
30 s) and ``FSDKaggle2019.meta.zip`` (``train_curated_post_competition.csv``), with
imbalanced classes and some multi-label rows (``"Bark,Walk_and_footsteps"``).
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SR = 44100
CATEGORIES = ["dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby",
              "sneezing", "clock_tick", "helicopter", "chainsaw"]
FSD_LABELS = ["Bark", "Walk_and_footsteps", "Accordion", "Applause", "Bus", "Cricket",
              "Drip", "Gong", "Purr", "Zipper_(clothing)"]


def synth_clip(target: int, rng: np.random.Generator, seconds: float = 5.0,
               sr: int = SR) -> np.ndarray:
    """A clip of class ``target``: a class-specific tone with jitter plus quiet noise."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 220.0 * 2 ** (target * 0.6) * rng.uniform(0.97, 1.03)
    tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
               for h in range(1, 2 + target % 3))
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * (1 + target) * t)
    noise = rng.normal(size=t.size)
    if target % 2:  # brown-ish noise for odd classes, white for even ones
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(512) / 512, mode="same")
    y = 0.5 * tone * tremolo / np.abs(tone).max() + 0.05 * noise / np.abs(noise).max()
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def esc50_metadata(n_classes: int, per_fold: int) -> pd.DataFrame:
    """Metadata rows in the real esc50.csv format, ``{fold}-{src}-{take}-{target}.wav``."""
    rows = []
    for fold in range(1, 6):
        for target in range(n_classes):
            for k in range(per_fold):
                src = f"{100000 + 1000 * fold + 10 * target + k}"
                rows.append({
                    "filename": f"{fold}-{src}-A-{target}.wav", "fold": fold,
                    "target": target, "category": CATEGORIES[target], "esc10": target < 2,
                    "src_file": src, "take": "A",
                })
    return pd.DataFrame(rows)


def write_esc50_zip(path: Path, n_classes: int = 5, per_fold: int = 2, seed: int = 0) -> Path:
    """Write ``ESC-50-master.zip`` at ``path`` and return the path."""
    if not 2 <= n_classes <= len(CATEGORIES):
        raise ValueError(f"n_classes must be in 2..{len(CATEGORIES)}, got {n_classes}")
    rng = np.random.default_rng(seed)
    meta = esc50_metadata(n_classes, per_fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ESC-50-master/README.md", "Synthetic ESC-50 layout for tests.\n")
        zf.writestr("ESC-50-master/meta/esc50.csv", meta.to_csv(index=False))
        for row in meta.itertuples():
            clip = synth_clip(row.target, rng)
            zf.writestr(f"ESC-50-master/audio/{row.filename}", wav_bytes(clip))
    return path


def freesound_metadata(n_classes: int, per_class: int, rng: np.random.Generator
                       ) -> pd.DataFrame:
    """Rows of train_curated_post_competition.csv: imbalanced single-label classes (the
    first class has ``per_class`` clips, the others fewer, down to about half) plus a
    multi-label clip for every other class."""
    rows = []
    for target in range(n_classes):
        count = per_class - (per_class // 2) * target // max(1, n_classes - 1)
        rows += [{"labels": FSD_LABELS[target], "target": target} for _ in range(count)]
        if target % 2 == 0:
            rows.append({"labels": f"{FSD_LABELS[target]},{FSD_LABELS[(target + 1) % n_classes]}",
                         "target": target})
    meta = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    meta["fname"] = [f"{rng.integers(16**7, 16**8):08x}.wav" for _ in range(len(meta))]
    meta["freesound_id"] = rng.integers(10_000, 400_000, len(meta))
    meta["license"] = "CC-BY"
    return meta.reset_index(drop=True)


def write_freesound_zips(folder: Path, n_classes: int = 5, per_class: int = 12,
                         seed: int = 0) -> tuple[Path, Path]:
    """Write the two FSDKaggle2019 archives into ``folder``; returns (audio zip, meta zip)."""
    if not 2 <= n_classes <= len(FSD_LABELS):
        raise ValueError(f"n_classes must be in 2..{len(FSD_LABELS)}, got {n_classes}")
    rng = np.random.default_rng(seed)
    meta = freesound_metadata(n_classes, per_class, rng)
    folder.mkdir(parents=True, exist_ok=True)
    audio_zip = folder / "FSDKaggle2019.audio_train_curated.zip"
    meta_zip = folder / "FSDKaggle2019.meta.zip"
    lengths = np.concatenate([[0.3, 30.0], rng.uniform(0.5, 12.0, len(meta))])[: len(meta)]
    with zipfile.ZipFile(audio_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        for row, seconds in zip(meta.itertuples(), lengths, strict=True):
            clip = synth_clip(row.target, rng, seconds=float(seconds))
            zf.writestr(f"FSDKaggle2019.audio_train_curated/{row.fname}", wav_bytes(clip))
    columns = ["fname", "labels", "freesound_id", "license"]
    with zipfile.ZipFile(meta_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FSDKaggle2019.meta/train_curated_post_competition.csv",
                    meta[columns].to_csv(index=False))
        zf.writestr("FSDKaggle2019.meta/test_post_competition_scoring_clips.csv",
                    "fname,labels,usage,freesound_id,license\n")
    return audio_zip, meta_zip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["esc50", "freesound"])
    parser.add_argument("out", type=Path,
                        help="esc50: the zip to write; freesound: the folder for both zips")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--per-fold", type=int, default=2, help="esc50: clips per class, fold")
    parser.add_argument("--per-class", type=int, default=12,
                        help="freesound: single-label clips of the largest class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.dataset == "esc50":
        written = [write_esc50_zip(args.out, args.classes, args.per_fold, args.seed)]
    else:
        written = write_freesound_zips(args.out, args.classes, args.per_class, args.seed)
    print("wrote " + " and ".join(map(str, written)))


if __name__ == "__main__":
    main()
