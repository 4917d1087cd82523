"""Shared fixtures: small synthetic datasets in the real archive layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from scripts.make_demo_data import (
    SR,
    synth_clip,
    write_demo_weights,
    write_esc50_zip,
    write_freesound_zips,
)
from soundclf.features.summary import SummaryFeatures, feature_names

REPO = Path(__file__).resolve().parents[1]


# The mel block's values are a matrix product (mel filters x power spectrum) done by BLAS,
# whose float32 sums depend on the batch shape and the machine: seen differing by 1e-7
# relative (AMD EPYC, OpenBLAS). 1e-5 relative, 1e-4 dB absolute is ~100 float32 ulps of an
# 80 dB range and far below any real difference. STFT (FFT) and CQT (FFT, sparse filters)
# do not go through BLAS and stay exact.
MEL_RTOL, MEL_ATOL_DB = 1e-5, 1e-4


def assert_features_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    """Feature rows computed two ways agree: STFT and CQT bit-exact, mel to float32 rounding.

    The rows are of the default features (2,474 columns)."""
    names = np.array([n.split("_", 1)[0] for n in feature_names(SummaryFeatures())])
    actual, expected = np.atleast_2d(actual), np.atleast_2d(expected)
    assert actual.shape == expected.shape
    for block in ("stft", "cqt"):
        np.testing.assert_array_equal(actual[:, names == block], expected[:, names == block],
                                      err_msg=block)
    np.testing.assert_allclose(actual[:, names == "mel"], expected[:, names == "mel"],
                               rtol=MEL_RTOL, atol=MEL_ATOL_DB, err_msg="mel")


@pytest.fixture(scope="session")
def esc50_zip(tmp_path_factory) -> Path:
    """A 4-class ESC-50-master.zip: 5 folds x 4 classes x 3 clips (60 five-second WAVs)."""
    path = tmp_path_factory.mktemp("esc50") / "ESC-50-master.zip"
    return write_esc50_zip(path, n_classes=4, per_fold=3, seed=1)


@pytest.fixture
def wav(tmp_path) -> callable:
    """Write a generated clip of class ``target`` and ``seconds`` length; returns its path."""

    def write(name: str = "clip.wav", target: int = 0, seconds: float = 5.0,
              sr: int = SR) -> Path:
        path = tmp_path / name
        sf.write(path, synth_clip(target, np.random.default_rng(target), seconds, sr), sr,
                 subtype="PCM_16")
        return path

    return write


def separable_table(n_per_class: int = 30, n_classes: int = 3, n_features: int = 12,
                    seed: int = 0) -> pd.DataFrame:
    """A normalized-stage table: ``filename``, ``label``, ``split`` and feature columns."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.normal(size=(labels.size, n_features)).astype(np.float32)
    x[np.arange(labels.size), labels] += 4.0
    table = pd.DataFrame(x, columns=[f"stft_mean_{i}" for i in range(n_features)])
    table.insert(0, "filename", [f"{i}.wav" for i in range(labels.size)])
    table.insert(1, "label", [f"class_{k}" for k in labels])
    table.insert(2, "split", np.where(np.arange(labels.size) % 5 == 0, "valid", "train"))
    return table


@pytest.fixture(scope="session")
def freesound_zips(tmp_path_factory) -> tuple[Path, Path]:
    """FSDKaggle2019 audio and meta zips: 5 imbalanced classes (12 down to 6 single-label
    clips), 3 multi-label rows, clips from 0.3 to 30 s."""
    return write_freesound_zips(tmp_path_factory.mktemp("freesound"), 5, 12, seed=2)


@pytest.fixture(scope="session")
def demo_weights(tmp_path_factory) -> dict[str, str]:
    """``weights.aisfx`` for a checkpoint of aisfx's network with seeded random weights
    (a local path and its SHA-256): the pipeline's pretrained stages without the download."""
    path = tmp_path_factory.mktemp("weights") / "checkpoint.pth"
    return {"url": str(path), "sha256": write_demo_weights(path)}
