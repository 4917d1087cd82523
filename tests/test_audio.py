"""Features against a direct librosa computation, written as the original analysis did
(``naive_features``: the original code, kept in the benchmark script as its reference)."""

import numpy as np
import pytest

from scripts.bench_features import naive_features as reference_features
from soundclf.data.audio import load_clip
from soundclf.features.extraction import ExtractionError
from soundclf.features.summary import (
    SummaryFeatures,
    extract_features,
    feature_names,
    file_features,
)
from soundclf.table import feature_columns

FP = SummaryFeatures()


def test_names_are_the_original_2474_columns_in_order():
    names = feature_names(FP)
    assert len(names) == 2474 == len(set(names))
    assert names[:2] == ["stft_mean_0", "stft_mean_1"]
    assert names[1025] == "stft_std_0"
    assert names[2050:2052] == ["mel_mean_0", "mel_mean_1"]
    assert names[2178] == "mel_std_0"
    assert names[2306] == "cqt_mean_0" and names[2390] == "cqt_std_0"
    assert names[-1] == "cqt_std_83"
    assert feature_columns(["filename", "label", "fold", *names, "split"]) == names


@pytest.mark.parametrize("seconds", [5.0, 2.3, 7.0])
def test_features_match_direct_librosa(wav, seconds):
    path = wav(target=2, seconds=seconds)
    ours = file_features(path, FP)
    ref = reference_features(path)
    assert ours.shape == (2474,)
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


def test_other_sample_rate_is_resampled_and_short_clip_padded(wav):
    y = load_clip(wav(seconds=1.0, sr=22050), FP)
    assert y.shape == (220500,)
    assert np.all(y[44100 + 100:] == 0)  # 1 s of audio, zero-padded to 5 s


def test_parallel_extraction_keeps_order_and_reports_every_bad_file(wav, tmp_path):
    paths = [wav(f"{k}.wav", target=k, seconds=1.0) for k in range(3)]
    values, errors = extract_features(paths, FP, n_jobs=2)
    assert errors == {}
    np.testing.assert_allclose(values[2], reference_features(paths[2]), rtol=1e-4)
    assert not np.allclose(values[0], values[1])

    bad = [tmp_path / "missing.wav", tmp_path / "garbage.wav"]
    bad[1].write_bytes(b"not audio at all")
    with pytest.raises(ExtractionError) as err:
        extract_features([paths[0], *bad], FP, n_jobs=1)
    assert "2 of 3 clips failed" in str(err.value)
    assert "missing.wav" in str(err.value) and "garbage.wav" in str(err.value)
