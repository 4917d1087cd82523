"""Each clip's log-mel spectrogram, for models that read time (the CNN).

``power_to_db(melspectrogram(y, sr, n_fft, hop_length, n_mels), ref=max)`` of the first
``duration`` seconds, zero-padded (the ``spectrograms`` section), computed by the
extraction engine and its per-clip cache (soundclf.features.extraction) and stored as
float16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from soundclf.data.audio import Recipe
from soundclf.features.extraction import compute_dataset
from soundclf.table import save_inputs


@dataclass(frozen=True)
class LogMelSpectrogram(Recipe):
    """The ``spectrograms`` section: each clip's log-mel spectrogram, for the CNN."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 48

    def batch(self, ys: np.ndarray) -> np.ndarray:
        """``power_to_db(melspectrogram, ref=max)`` of each clip: (clips, n_mels, frames)."""
        mel = librosa.feature.melspectrogram(y=ys, sr=self.sr, n_fft=self.n_fft,
                                             hop_length=self.hop_length, n_mels=self.n_mels)
        return np.stack([librosa.power_to_db(m, ref=np.max) for m in mel])


def write_spectrograms(dataset: str, raw_dir: Path, params: dict, out: Path,
                       cache_dir: Path) -> list[str]:
    """The whole stage; returns the filenames left out (``features.on_error: skip``)."""
    recipe = LogMelSpectrogram.from_params(params["spectrograms"])
    done = compute_dataset(dataset, raw_dir, recipe, cache_dir, params["features"],
                           params=params)
    save_inputs(out, done.filenames(), np.stack(done.values()).astype(np.float16))
    return done.skipped()
