"""Feature extraction at scale: batches, the per-clip cache, the Dask backend."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster

from scripts.bench_features import naive_features as reference_features
from soundclf.data.audio import load_clip
from soundclf.features.extraction import ExtractionError
from soundclf.features.summary import (
    SummaryFeatures,
    batch_features,
    extract_features,
    feature_names,
    write_features,
)
from tests.conftest import REPO, assert_features_equal

FP = SummaryFeatures()


def params(**features):
    return {"features": {"sr": 44100, "duration": 5.0, "n_fft": 2048, "hop_length": 512,
                         "n_mels": 128, "cqt_bins": 84, "n_jobs": 2, "batch_size": 8,
                         "backend": "local", "scheduler": None, "on_error": "fail",
                         **features}}


@pytest.fixture
def raw(esc50_zip, tmp_path):
    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path / "raw")
    return tmp_path / "raw"


def test_batch_rows_equal_one_clip_computation(wav):
    """A row of a batch is the one-clip row (mel up to BLAS rounding, see conftest)."""
    paths = [wav(f"{k}.wav", target=k, seconds=s) for k, s in enumerate([5.0, 1.0, 3.3])]
    batch = batch_features(np.stack([load_clip(p, FP) for p in paths]), FP)
    for path, row in zip(paths, batch, strict=True):
        assert_features_equal(row, batch_features(load_clip(path, FP)[None], FP)[0])
        np.testing.assert_allclose(row, reference_features(path), rtol=1e-4)


def stage(raw, tmp_path, name, capsys, **features):
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    write_features("esc50", raw, params(**features), out / "f.parquet", out / "f.json",
        out / "skipped.csv", tmp_path / "cache")
    return pd.read_parquet(out / "f.parquet"), capsys.readouterr().out


def test_cache_computes_only_new_clips_and_changed_params(raw, tmp_path, capsys, wav):
    csv = raw / "ESC-50-master/meta/esc50.csv"
    full = csv.read_text()
    csv.write_text("\n".join(full.splitlines()[:41]) + "\n")  # the first 40 clips
    first, log = stage(raw, tmp_path, "first", capsys)
    assert len(first) == 40 and "0 of 40 clips in the feature cache; computing 40" in log

    csv.write_text(full)  # 20 clips added to the dataset
    second, log = stage(raw, tmp_path, "second", capsys)
    assert "40 of 60 clips in the feature cache; computing 20" in log
    pd.testing.assert_frame_equal(second.iloc[:40], first)

    again, log = stage(raw, tmp_path, "again", capsys, n_jobs=1, batch_size=3)
    assert "60 of 60 clips in the feature cache; computing 0" in log
    pd.testing.assert_frame_equal(again, second)

    new_audio = wav("new.wav", target=3, seconds=4.0).read_bytes()
    (raw / "ESC-50-master/audio" / second["filename"][5]).write_bytes(new_audio)  # edited
    changed, log = stage(raw, tmp_path, "changed", capsys)
    assert "59 of 60 clips in the feature cache; computing 1" in log
    assert not np.allclose(changed.iloc[5, 4:].to_numpy(float), second.iloc[5, 4:].to_numpy(float))

    fewer_mels, log = stage(raw, tmp_path, "mels", capsys, n_mels=64)
    assert "0 of 60 clips in the feature cache; computing 60" in log
    assert "mel_mean_63" in fewer_mels.columns and "mel_mean_64" not in fewer_mels.columns

    (tmp_path / "nocache").mkdir()
    fresh, _ = stage(raw, tmp_path / "nocache", "fresh", capsys)
    features = feature_names(FP)  # clip 5 was computed alone above, in a batch of 8 here
    pd.testing.assert_frame_equal(fresh.drop(columns=features), changed.drop(columns=features))
    assert_features_equal(fresh[features].to_numpy(), changed[features].to_numpy())


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


@pytest.mark.slow  # starts a Dask cluster
def test_dask_backend_gives_the_same_values(wav, cluster):
    paths = [wav(f"{k}.wav", target=k % 4, seconds=2.0) for k in range(6)]
    local, _ = extract_features(paths, FP, n_jobs=2, batch_size=4)
    dask, _ = extract_features(paths, FP, n_jobs=2, batch_size=4, backend_name="dask",
                               scheduler=cluster.scheduler_address)
    assert_features_equal(dask, local)  # other processes, other BLAS threads
    assert local.shape == (6, len(feature_names(FP)))


def test_dask_backend_reports_the_clip_at_fault(wav, tmp_path, cluster):
    paths = [wav("good.wav", seconds=1.0), tmp_path / "broken.wav", wav("other.wav", 2)]
    paths[1].write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ExtractionError, match=r"1 of 3 clips failed.*\n  .*broken\.wav: Audio"):
        extract_features(paths, FP, n_jobs=2, batch_size=2, backend_name="dask",
                         scheduler=cluster.scheduler_address)


@pytest.mark.slow  # the script in a process of its own
def test_benchmark_script_runs_on_two_clips(wav):
    """Not a timing test: the benchmark runs end to end and compares the two extractors."""
    paths = [wav("a.wav", target=0, seconds=5.0), wav("b.wav", target=2, seconds=1.5)]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/bench_features.py"), *map(str, paths),
         "--n-jobs", "1", "--batch-size", "2"], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 clips; warming up" in out
    assert re.search(r"naive loop : +[\d.]+ clips/s +peak memory \+ *\d+ MB", out)
    assert re.search(r"ratio +: [\d.]+x the naive loop", out)
    for block in ("stft", "mel", "cqt"):
        relative = float(re.search(rf"{block} +max relative (\S+)", out)[1])
        assert relative < 1e-4
