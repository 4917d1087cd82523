"""Audio loading: a clip as the features see it, mono at a given rate, cut or zero-padded to
a given duration; and :class:`Recipe`, what is computed of a loaded clip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf


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


