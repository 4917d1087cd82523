"""Make tests/data/aisfx_reference.npz: embeddings computed by the original aisfx code.

    pip download --no-deps aisfx==0.1.2 -d /tmp/aisfx && unzip /tmp/aisfx/*.whl -d /tmp/aisfx/x
    python scripts/aisfx_reference.py /tmp/aisfx/x tests/data/aisfx_reference.npz

A developer tool, run once outside the pipeline: it imports the package's own code
(``aisfx.inference``, ``aisfx.models.cnn2d``, ``aisfx.spectrogram.spectrogram_librosa``)
from the unpacked wheel and its weights, so that tests/test_embeddings.py can check this
project's network (soundclf/features/encoders.py) against it without the package. It stores:

- ``windows`` (3, 100, 96), seeded uniform values, and ``windows_embedding``, the
  original network's (3, 512) output for them;
- ``clip_embedding``: the original pipeline's windows of ``reference_clip()`` (written as
  16-bit WAV at 44.1 kHz), its librosa spectrogram transposed to (frames, bands) as the
  network expects (the package hands it the transpose), normalized with its 'original'
  values, hop 0.5, last partial window dropped;
- ``short_embedding``: the same for a 1.5 s clip (65 frames: one zero-padded window;
  the original refuses clips shorter than its hop, 50 frames, which this project pads);
- the SHA-256 of the checkpoint used.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 44100


def reference_clip(seconds: float) -> np.ndarray:
    """A clip without randomness: a rising chirp, a 3 Hz amplitude beat and a click train."""
    t = np.arange(int(SR * seconds)) / SR
    chirp = np.sin(2 * np.pi * (200 * t + 900 * t**2)) * (0.6 + 0.3 * np.sin(2 * np.pi * 3 * t))
    clicks = (np.mod(t, 0.25) < 0.002) * 0.5
    return (0.5 * chirp + clicks).astype(np.float32)


def write_wav(path: Path, y: np.ndarray) -> None:
    sf.write(path, y, SR, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", type=Path, help="folder holding the unpacked aisfx/")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.package_dir))
    from aisfx import inference, preprocessing
    from aisfx.spectrogram import spectrogram_librosa


    checkpoint = args.package_dir / "aisfx" / "models" / "checkpoint.pth"
    weights, datasets = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = inference.load_bestModel(weights, datasets, "cpu")

    windows = np.random.default_rng(0).random((3, 100, 96), dtype=np.float32)
    with torch.no_grad():
        windows_embedding = model.get_embedding(torch.from_numpy(windows)).numpy()

    def clip_embedding(y: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clip.wav"
            write_wav(path, y)
            spec = spectrogram_librosa.compute_spectrogram(
                str(path), inference.SAMPLE_RATE, inference.SPEC_BLOCK_LENGTH,
                inference.SPEC_HOP_LENGTH, inference.MEL_BINS, inference.F_MIN,
                inference.F_MAX).T  # (frames, bands): the package's librosa path omits this
        spec = preprocessing.spectrogram_normalize(spec, "original")
        return inference.model_get_embedding(spec, 0.5, True, model, "cpu").numpy()

    np.savez_compressed(args.out, windows=windows, windows_embedding=windows_embedding,
                        clip_embedding=clip_embedding(reference_clip(6.0)),
                        short_embedding=clip_embedding(reference_clip(1.5)),
                        checkpoint_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
