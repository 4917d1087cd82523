"""Write small synthetic datasets in the exact ESC-50 and FSDKaggle2019 archive layouts.

    python scripts/make_demo_data.py esc50 demo/ESC-50-master.zip [--classes 5] [--per-fold 2]
                                     [--per-class 8] [--per-recording 1]
    python scripts/make_demo_data.py freesound demo/ [--classes 5] [--per-class 12]
                                     [--sizes 1,2,3,4,5]
    python scripts/make_demo_data.py weights demo/aisfx.pth

Each class is a clearly different synthetic sound (its own pitch, harmonics, tremolo rate
and noise colour), so a working pipeline separates them easily; clips are 5-second
44.1 kHz PCM16 mono WAVs, five folds, with ``meta/esc50.csv`` as in the real archive. Use
it to try the pipeline without the 600 MB download:

    dvc exp run -S data.esc50.url=demo/ESC-50-master.zip

The FreeSound layout is Zenodo's: ``FSDKaggle2019.audio_train_curated.zip`` (WAVs of 0.3 to
30 s) and ``FSDKaggle2019.meta.zip`` (``train_curated_post_competition.csv``), with
imbalanced classes and some multi-label rows (``"Bark,Walk_and_footsteps"``).

``weights`` writes a checkpoint of the pretrained encoder's network
(soundclf.features.encoders) with random weights, for tests and demos without the real
one's download.

Shapes that real data has and even synthetic classes hide: up to 50 ESC-50 classes with
several clips cut from one recording (``--per-recording``, one ``src_file``), and FreeSound
classes of given sizes (``--sizes 1,2,3,4,5`` cycles those sizes over the classes).
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
MAX_CLASSES = 50


def class_name(names: list[str], target: int) -> str:
    """The listed name of class ``target``, or a made-up one past the list."""
    return names[target] if target < len(names) else f"sound_{target:02d}"


def synth_clip(target: int, rng: np.random.Generator, seconds: float = 5.0,
               sr: int = SR) -> np.ndarray:
    """A clip of class ``target``: a class-specific tone with jitter plus quiet noise."""
    t = np.arange(int(seconds * sr)) / sr
    # the first ten classes as they always were; more classes step by a quarter tone
    base = 220.0 * 2 ** (target * 0.6) if target < 10 else 110.0 * 2 ** ((target - 10) / 6)
    f0 = base * rng.uniform(0.97, 1.03)
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


def esc50_metadata(n_classes: int, per_fold: int, per_recording: int = 1,
                   per_class: int | None = None) -> pd.DataFrame:
    """Metadata rows in the real esc50.csv format, ``{fold}-{src}-{take}-{target}.wav``.

    ``per_fold`` clips of each class in each fold, or ``per_class`` clips of each class
    spread over the five folds (uneven: 8 gives two folds one clip and three folds two,
    which folds depending on the class). Consecutive clips of a class in a fold are cut
    from one recording (``src_file``), ``per_recording`` at a time (takes A, B, C...); one
    recording gives clips to classes 0 and 1 in folds 3 and 2, as four do in the real file.
    """
    rows = []
    for fold in range(1, 6):
        for target in range(n_classes):
            count = per_fold if per_class is None else (
                per_class // 5 + ((fold - 1 - target) % 5 < per_class % 5))
            for k in range(count):
                src = f"{100000 + 1000 * fold + 10 * target + k // per_recording}"
                take = chr(ord("A") + k % per_recording)
                rows.append({
                    "fold": fold, "target": target, "category": class_name(CATEGORIES, target),
                    "esc10": target < 2, "src_file": src, "take": take,
                })
    meta = pd.DataFrame(rows)
    # as in the official file (e.g. 131943: clock_tick in fold 2, clock_alarm in fold 3),
    # one recording gives clips to two classes in two folds: class 1's first clip of fold 2
    # is cut from the recording of class 0's first clip of fold 3
    shared = [meta.index[(meta["fold"] == f) & (meta["target"] == t)] for f, t in ((3, 0), (2, 1))]
    if all(len(found) for found in shared):
        meta.loc[shared[1][0], "src_file"] = meta.loc[shared[0][0], "src_file"]
    meta.insert(0, "filename", [f"{r.fold}-{r.src_file}-{r.take}-{r.target}.wav"
                                for r in meta.itertuples()])
    return meta


def write_esc50_zip(path: Path, n_classes: int = 5, per_fold: int = 2, seed: int = 0,
                    per_recording: int = 1, per_class: int | None = None) -> Path:
    """Write ``ESC-50-master.zip`` at ``path`` and return the path."""
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in 2..{MAX_CLASSES}, got {n_classes}")
    if not 1 <= (per_fold if per_class is None else -(-per_class // 5)) <= 10:
        raise ValueError("at most 10 clips of a class in a fold (src_file numbering)")
    rng = np.random.default_rng(seed)
    meta = esc50_metadata(n_classes, per_fold, per_recording, per_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ESC-50-master/README.md", "Synthetic ESC-50 layout for tests.\n")
        zf.writestr("ESC-50-master/meta/esc50.csv", meta.to_csv(index=False))
        for row in meta.itertuples():
            clip = synth_clip(row.target, rng)
            zf.writestr(f"ESC-50-master/audio/{row.filename}", wav_bytes(clip))
    return path


def freesound_metadata(n_classes: int, per_class: int, rng: np.random.Generator,
                       sizes: list[int] | None = None) -> pd.DataFrame:
    """Rows of train_curated_post_competition.csv: imbalanced single-label classes (the
    first class has ``per_class`` clips, the others fewer, down to about half; or
    ``sizes`` cycled over the classes) plus a multi-label clip for every other class."""
    rows = []
    for target in range(n_classes):
        count = (sizes[target % len(sizes)] if sizes
                 else per_class - (per_class // 2) * target // max(1, n_classes - 1))
        label = class_name(FSD_LABELS, target)
        rows += [{"labels": label, "target": target} for _ in range(count)]
        if target % 2 == 0:
            other = class_name(FSD_LABELS, (target + 1) % n_classes)
            rows.append({"labels": f"{label},{other}", "target": target})
    meta = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    meta["fname"] = [f"{rng.integers(16**7, 16**8):08x}.wav" for _ in range(len(meta))]
    meta["freesound_id"] = rng.integers(10_000, 400_000, len(meta))
    meta["license"] = "CC-BY"
    return meta.reset_index(drop=True)


def write_freesound_zips(folder: Path, n_classes: int = 5, per_class: int = 12,
                         seed: int = 0, sizes: list[int] | None = None) -> tuple[Path, Path]:
    """Write the two FSDKaggle2019 archives into ``folder``; returns (audio zip, meta zip)."""
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in 2..{MAX_CLASSES}, got {n_classes}")
    rng = np.random.default_rng(seed)
    meta = freesound_metadata(n_classes, per_class, rng, sizes)
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


def write_demo_weights(path: Path, seed: int = 0) -> str:
    """A checkpoint in aisfx's format (a pickled ``(state_dict, datasets)``, the embedding
    network's tensors under ``embedding_net.``) of the same network with seeded random
    weights: the pipeline runs on it as on the real one, without the download. Returns its
    SHA-256, for ``weights.aisfx.sha256``."""
    import torch

    from soundclf.data.archive import sha256sum
    from soundclf.features.encoders import ENCODERS

    torch.manual_seed(seed)
    net = ENCODERS["aisfx"].network()
    state = {f"embedding_net.{k}": v for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((state, {"demo": (np.int64(0), 4)}), path)
    return sha256sum(path)


def write_folder_dataset(root: Path, labels: list[str], per_class: int = 10, seed: int = 0,
                         metadata: bool = False, per_recording: int = 1,
                         formats: tuple[str, ...] = ("wav",)) -> Path:
    """A dataset of the folder kind at ``root``: ``<label>/<label>-<k>.<format>`` for
    ``per_class`` clips of each label (class ``i`` of ``labels`` sounds as class ``i`` of
    the ESC-50 demo), clips of 2 to 6 s at 22.05 or 44.1 kHz, mono or stereo, the formats
    cycled (``wav``, ``flac``, ``ogg``, ``mp3``). With ``metadata``, also a ``metadata.csv`` of
    ``file_name``, ``label``, ``fold`` (1 to 5 by recording) and ``group`` (the recording:
    ``per_recording`` consecutive clips of a label share one)."""
    rng = np.random.default_rng(seed)
    rows = []
    for target, label in enumerate(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            fmt = formats[k % len(formats)]
            sr = (SR, 22050)[k % 2]
            clip = synth_clip(target, rng, seconds=2.0 + (k % 5), sr=sr)
            if k % 3 == 2:
                clip = np.stack([clip, 0.5 * clip], axis=1)  # stereo
            name = f"{label}/{label}-{k}.{fmt}"
            sf.write(root / name, clip, sr, format=fmt.upper(),
                     subtype={"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}.get(fmt, "PCM_16"))
            group = f"{label}-rec{k // per_recording}"
            rows.append({"file_name": name, "label": label,
                         "fold": k // per_recording % 5 + 1, "group": group})
    if metadata:
        pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["esc50", "freesound", "weights"])
    parser.add_argument("out", type=Path,
                        help="esc50: the zip to write; freesound: the folder for both zips; "
                             "weights: the checkpoint to write")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--per-fold", type=int, default=2, help="esc50: clips per class, fold")
    parser.add_argument("--per-class", type=int,
                        help="esc50: clips per class over the five folds (instead of --per-fold)"
                             "; freesound: single-label clips of the largest class")
    parser.add_argument("--per-recording", type=int, default=1,
                        help="esc50: clips cut from one recording (one src_file)")
    parser.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")],
                        help="freesound: clip counts of the classes, cycled, e.g. 1,2,3,4,5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.dataset == "weights":
        sha256 = write_demo_weights(args.out, args.seed)
        print(f"wrote {args.out}: dvc exp run -S weights.aisfx.url={args.out} "
              f"-S weights.aisfx.sha256={sha256}")
        return
    if args.dataset == "esc50":
        written = [write_esc50_zip(args.out, args.classes, args.per_fold, args.seed,
                                   args.per_recording, args.per_class)]
    else:
        written = write_freesound_zips(args.out, args.classes, args.per_class or 12, args.seed,
                                       args.sizes)
    print("wrote " + " and ".join(map(str, written)))


if __name__ == "__main__":
    main()
