"""The 2,474 summary features of a clip, and the feature table of a dataset.

A clip's features are the original analysis's: ``librosa.load(path, sr=44100,
duration=5)`` zero-padded to ``sr * duration`` samples, then the per-bin mean and standard
deviation over time of ``|stft|``, ``power_to_db(melspectrogram, ref=max)`` and ``|cqt|``.
The mel spectrogram is computed from the STFT already taken (``S=|stft|**2``), which is
what ``melspectrogram(y=...)`` does internally, so the values are the same. The table has
a row per clip, its metadata columns then the features (:func:`feature_names`), written
from the per-clip cache in chunks, so memory is bounded by a chunk, not the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from soundclf.data.audio import Recipe, load_clip
from soundclf.features.extraction import (
    ClipCache,
    check_errors,
    compute,
    compute_dataset,
)
from soundclf.io import write_json, write_with
from soundclf.table import BLOCKS


@dataclass(frozen=True)
class SummaryFeatures(Recipe):
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


def feature_names(params: SummaryFeatures) -> list[str]:
    """Column names in the original order: per block, all means then all stds."""
    names = []
    for block, size in params.block_sizes().items():
        for stat in ("mean", "std"):
            names += [f"{block}_{stat}_{i}" for i in range(size)]
    return names


def _mean_std(x: np.ndarray) -> np.ndarray:
    """Per-bin mean then standard deviation over time: (..., bins, frames) -> (..., 2 * bins)."""
    return np.concatenate([np.mean(x, axis=-1), np.std(x, axis=-1)], axis=-1)


def batch_features(ys: np.ndarray, params: SummaryFeatures) -> np.ndarray:
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


def clip_features(y: np.ndarray, params: SummaryFeatures) -> np.ndarray:
    """The feature vector of one loaded clip, in :func:`feature_names` order."""
    return batch_features(y[np.newaxis], params)[0]


def file_features(path: str | Path, params: SummaryFeatures) -> np.ndarray:
    """Load one audio file and return its feature vector."""
    return clip_features(load_clip(path, params), params)


WRITE_CHUNK = 512  # clips per parquet row group


def write_table(dest: Path, meta: pd.DataFrame, keys: list[str], cache: ClipCache,
                names: list[str]) -> None:
    """Write metadata and cached features as parquet, ``WRITE_CHUNK`` rows at a time."""
    def write(tmp: Path) -> None:
        writer = None
        for start in range(0, len(meta), WRITE_CHUNK):
            rows = meta.iloc[start:start + WRITE_CHUNK].reset_index(drop=True)
            values = np.stack([cache.get(k) for k in keys[start:start + WRITE_CHUNK]])
            chunk = pa.Table.from_pandas(
                pd.concat([rows, pd.DataFrame(values, columns=names)], axis=1),
                preserve_index=False,
            )
            writer = writer or pq.ParquetWriter(tmp, chunk.schema)
            writer.write_table(chunk)
        if writer:
            writer.close()

    write_with(dest, write)


def write_features(dataset: str, raw_dir: Path, params: dict, out: Path, metrics: Path,
        skipped_csv: Path, cache_dir: Path) -> pd.DataFrame:
    """The whole stage; returns the table of skipped clips (``filename``, ``error``)."""
    settings = params["features"]
    fp = SummaryFeatures.from_params(settings)
    done = compute_dataset(dataset, raw_dir, fp, cache_dir, settings, params=params)
    write_table(out, done.meta.iloc[done.kept], [done.keys[i] for i in done.kept], done.cache,
                feature_names(fp))
    skipped = pd.DataFrame({"filename": done.skipped(),
                            "error": [done.errors[i] for i in sorted(done.errors)]})
    write_with(skipped_csv, lambda tmp: skipped.to_csv(tmp, index=False))
    write_json(metrics, {"clips": len(done.kept), "skipped": len(skipped)})
    return skipped


def extract_features(paths: list[Path], fp: SummaryFeatures, n_jobs: int = 1,
                     on_error: str = "fail", **options) -> tuple[np.ndarray, dict[int, str]]:
    """A (clips, features) float32 matrix in the order of ``paths``, and the failures.

    Failures map the index in ``paths`` to the reason. With ``on_error="fail"`` any
    failure raises, listing them all; with ``"skip"`` their rows are NaN. ``options``
    go to :func:`compute`.
    """
    values = np.full((len(paths), len(feature_names(fp))), np.nan, dtype=np.float32)
    errors = {}
    for i, result in compute(paths, fp, n_jobs, **options):
        if isinstance(result, str):
            errors[i] = result
        else:
            values[i] = result
    check_errors(paths, errors, on_error)
    return values, errors
