"""Audio loading and the 2,474 hand-crafted features (STFT + mel + CQT summary statistics).

The values are those of the original analysis: ``librosa.load(path, sr=44100, duration=5)``,
zero-padded to ``sr * duration`` samples, then per-bin mean and standard deviation over
time of ``|stft|``, ``power_to_db(melspectrogram, ref=max)`` and ``|cqt|``. The mel
spectrogram is computed from the STFT already taken (``S=|stft|**2``), which is exactly what
``melspectrogram(y=...)`` does internally, so the values are the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from soundclf.table import BLOCKS


@dataclass(frozen=True)
class Recipe:
    """What is computed of a clip: how it is loaded (``sr``, ``duration``, see
    :func:`load_clip`) and computed, a batch of loaded clips at a time (``batch``)."""

    sr: int = 44100
    duration: float | None = 5.0  # None: the whole clip, however long

    @classmethod
    def from_params(cls, section: dict) -> Recipe:
        """From a params section; keys that are not fields (``n_jobs``...) are ignored."""
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in section.items() if k in fields})

    @property
    def n_samples(self) -> int:
        return int(round(self.sr * self.duration))

    def batch(self, ys: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def compute(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        """The values of each loaded clip: :meth:`batch` of them stacked (clips of one
        length). A recipe of whole clips of any length computes them one by one."""
        return list(self.batch(np.stack(ys)).astype(np.float32))


@dataclass(frozen=True)
class FeatureParams(Recipe):
    """The ``features`` section of params.yaml that defines the feature values."""

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    cqt_bins: int = 84

    def batch(self, ys: np.ndarray) -> np.ndarray:
        """Feature vectors of a batch of loaded clips (:func:`batch_features`)."""
        return batch_features(ys, self)

    def block_sizes(self) -> dict[str, int]:
        return dict(zip(BLOCKS, (1 + self.n_fft // 2, self.n_mels, self.cqt_bins), strict=True))


def feature_names(params: FeatureParams) -> list[str]:
    """Column names in the original order: per block, all means then all stds."""
    names = []
    for block, size in params.block_sizes().items():
        for stat in ("mean", "std"):
            names += [f"{block}_{stat}_{i}" for i in range(size)]
    return names


@dataclass(frozen=True)
class LogMelParams(Recipe):
    """The ``spectrograms`` section: each clip's log-mel spectrogram, for the CNN."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64

    def batch(self, ys: np.ndarray) -> np.ndarray:
        """``power_to_db(melspectrogram, ref=max)`` of each clip: (clips, n_mels, frames)."""
        mel = librosa.feature.melspectrogram(y=ys, sr=self.sr, n_fft=self.n_fft,
                                             hop_length=self.hop_length, n_mels=self.n_mels)
        return np.stack([librosa.power_to_db(m, ref=np.max) for m in mel])


class AudioError(ValueError):
    """A file that cannot be used as a clip: unreadable, empty or truncated."""


def load_clip(path: str | Path, params: Recipe) -> np.ndarray:
    """The first ``duration`` seconds of a clip, mono at ``sr``, zero-padded to full length
    (the whole clip when ``duration`` is None).

    Only the frames needed are decoded (``librosa.load`` with ``duration``); stereo is
    averaged to mono and other sample rates are resampled, as librosa does.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"not a readable audio file ({exc})") from None
    if info.frames == 0:
        raise AudioError("contains no audio samples")
    # libsndfile reads a truncated WAV without error, logging "data : <header> (should be
    # <actual>)"; a header larger than the data means the file was cut short.
    cut = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, re.M)
    if cut and int(cut[1]) > int(cut[2]):
        raise AudioError(f"truncated: its header announces {cut[1]} bytes of audio, "
                         f"the file holds {cut[2]}")
    y, _ = librosa.load(path, sr=params.sr, duration=params.duration)
    if params.duration is None:
        return y
    if len(y) < params.n_samples:
        y = np.pad(y, (0, params.n_samples - len(y)))
    return y[: params.n_samples]


def _mean_std(x: np.ndarray) -> np.ndarray:
    """Per-bin mean then standard deviation over time: (..., bins, frames) -> (..., 2 * bins)."""
    return np.concatenate([np.mean(x, axis=-1), np.std(x, axis=-1)], axis=-1)


def batch_features(ys: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Feature vectors of a batch of loaded clips, shape (clips, samples) -> (clips, features).

    librosa computes multi-channel input channel by channel with the same arithmetic, so
    each row equals the one-clip computation exactly; the batch pays the CQT's filter
    construction and per-octave resampling set-up once instead of once per clip.
    ``power_to_db(ref=np.max)`` is taken per clip, its maximum being the clip's own.
    """
    stft = np.abs(librosa.stft(ys, n_fft=params.n_fft, hop_length=params.hop_length))
    mel = librosa.feature.melspectrogram(
        S=stft**2, sr=params.sr, n_fft=params.n_fft, hop_length=params.hop_length,
        n_mels=params.n_mels,
    )
    mel_db = np.stack([librosa.power_to_db(m, ref=np.max) for m in mel])
    cqt = np.abs(
        librosa.cqt(ys, sr=params.sr, hop_length=params.hop_length, n_bins=params.cqt_bins)
    )
    return np.concatenate([_mean_std(stft), _mean_std(mel_db), _mean_std(cqt)], axis=-1)


def clip_features(y: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The feature vector of one loaded clip, in :func:`feature_names` order."""
    return batch_features(y[np.newaxis], params)[0]


def file_features(path: str | Path, params: FeatureParams) -> np.ndarray:
    """Load one audio file and return its feature vector."""
    return clip_features(load_clip(path, params), params)
