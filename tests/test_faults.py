"""Fault injection: flaky servers, bad archives and audio, killed stages.

Every test checks the message a user sees and that earlier good outputs are unchanged.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from scripts.bench_features import naive_features as reference_features
from scripts.make_demo_data import write_demo_weights
from soundclf.data import archive
from soundclf.data.archive import DownloadError, _download
from soundclf.data.datasets import LayoutError
from soundclf.data.download import download
from soundclf.features.encoders import WeightsError
from soundclf.features.extraction import ExtractionError
from soundclf.features.summary import SummaryFeatures, extract_features
from soundclf.features.weights import fetch_weights
from stages import feature_extraction
from tests.conftest import REPO

FP = SummaryFeatures()


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``payload`` with Range support; the first ``drops`` responses stop halfway."""

    payload = b""
    drops = 0
    ranges: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        cls = type(self)
        start = 0
        if "Range" in self.headers:
            cls.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
        body = cls.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.drops > 0:
            cls.drops -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-file
            return
        self.wfile.write(body)


@pytest.fixture
def flaky_server():
    """Start a server on 127.0.0.1; yields a function ``serve(payload, drops) -> url``."""
    handler = type("Handler", (FlakyHandler,), {"ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(payload: bytes, drops: int) -> str:
        handler.payload, handler.drops = payload, drops
        return f"http://127.0.0.1:{server.server_address[1]}/ESC-50-master.zip"

    serve.handler = handler
    yield serve
    server.shutdown()
    server.server_close()


def test_dropped_connection_resumes_with_range(flaky_server, tmp_path):
    payload = os.urandom(3_000_000)
    url = flaky_server(payload, drops=2)
    dest = tmp_path / "file.zip"
    _download(url, dest, retries=3, backoff_s=0.01)
    assert dest.read_bytes() == payload
    assert len(flaky_server.handler.ranges) == 2  # both retries resumed, not restarted
    assert not dest.with_name("file.zip.part").exists()


def test_giving_up_names_the_url_and_keeps_the_partial_file(flaky_server, tmp_path):
    url = flaky_server(os.urandom(1_000_000), drops=10)
    dest = tmp_path / "file.zip"
    with pytest.raises(DownloadError, match=f"could not download {url} after 3 attempts"):
        _download(url, dest, retries=2, backoff_s=0.01)
    assert not dest.exists()
    assert dest.with_name("file.zip.part").stat().st_size > 0  # resumed by the next run


def test_stalled_server_times_out_and_is_retried(tmp_path, monkeypatch):
    release = threading.Event()

    class Stall(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            release.wait(10)  # send nothing: the client's read timeout must fire

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(archive, "TIMEOUT_S", (2, 0.3))
    url = f"http://127.0.0.1:{server.server_address[1]}/slow.zip"
    try:
        with pytest.raises(DownloadError, match=r"after 2 attempts: .*[Rr]ead timed out"):
            _download(url, tmp_path / "slow.zip", retries=1, backoff_s=0.01)
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_http_error_is_not_retried(tmp_path):
    handler = type("NotFound", (http.server.SimpleHTTPRequestHandler,),
                   {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/no/such/archive.zip"
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=f"could not download {url}: 404"):
            _download(url, tmp_path / "x.zip", retries=3, backoff_s=5)
        assert time.monotonic() - started < 4  # no backoff sleeps
    finally:
        server.shutdown()
        server.server_close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_bad_checksum_over_http_keeps_the_previous_dataset(flaky_server, esc50_zip, tmp_path):
    out, cache = tmp_path / "raw", tmp_path / "cache"
    params = {"data": {"esc50": {"url": str(esc50_zip), "sha256": None}}}
    download("esc50", params, out, cache)
    before = snapshot(out)
    params["data"]["esc50"]["url"] = flaky_server(esc50_zip.read_bytes(), drops=1)
    params["data"]["esc50"]["sha256"] = "0" * 64
    with pytest.raises(DownloadError, match="checksum mismatch.*the downloaded file was deleted"):
        download("esc50", params, out, cache)
    assert snapshot(out) == before
    assert list(cache.iterdir()) == []


def write_zip(path: Path, members: dict[str, bytes | zipfile.ZipInfo]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_malicious_zip_writes_nothing_and_keeps_previous_dataset(esc50_zip, tmp_path):
    out, cache = tmp_path / "raw", tmp_path / "cache"
    download("esc50", {"data": {"esc50": {"url": str(esc50_zip), "sha256": None}}}, out, cache)
    before = snapshot(out)
    link = zipfile.ZipInfo("ESC-50-master/audio/a.wav")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(esc50_zip) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    for evil in ("ESC-50-master/../../escaped.txt", "/tmp/escaped.txt"):
        archive = write_zip(tmp_path / "evil.zip", {**members, evil: b"owned"})
        with pytest.raises(DownloadError, match=r"refusing unsafe archive members: .*escaped"):
            download("esc50", {"data": {"esc50": {"url": str(archive), "sha256": None}}},
                     out, cache)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        download("esc50", {"data": {"esc50": {"url": str(tmp_path / "link.zip"),
                                              "sha256": None}}}, out, cache)
    assert snapshot(out) == before
    assert not any(p.name == "escaped.txt" for p in tmp_path.parent.rglob("escaped.txt"))


def test_malformed_metadata_names_expected_columns(tmp_path):
    archive = write_zip(tmp_path / "ESC-50-master.zip", {
        "ESC-50-master/meta/esc50.csv": b"\x00\x01\x02garbage\xff\n",
        "ESC-50-master/audio/1-1-A-0.wav": b"",
    })
    with pytest.raises(LayoutError, match=r"ESC-50-master\.zip: ESC-50-master/meta/esc50\.csv: "
                       r"cannot read as CSV .*expected columns \['filename', 'fold', 'target'"):
        download("esc50", {"data": {"esc50": {"url": str(archive), "sha256": None}}},
                 tmp_path / "raw", tmp_path / "cache")


@pytest.fixture
def odd_clips(tmp_path, wav):
    """Generated WAVs: usable oddities and broken files."""
    rng = np.random.default_rng(0)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, rng.normal(0, 0.1, (44100 * 5, 2)).astype(np.float32), 44100,
             subtype="PCM_16")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(44100 * 5, np.float32), 44100, subtype="PCM_16")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 44100, subtype="PCM_16")
    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(200))
    full = wav("full.wav", target=1, seconds=5.0)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are my notes, not audio")
    return {
        "good": [stereo, silent, wav("sr22k.wav", target=2, seconds=5.0, sr=22050),
                 wav("short.wav", target=3, seconds=0.2)],
        "bad": [empty, zero_bytes, corrupt, truncated, not_audio],
    }


def test_usable_oddities_give_finite_reference_features(odd_clips):
    values, errors = extract_features(odd_clips["good"], FP, n_jobs=1)
    assert errors == {}
    assert np.isfinite(values).all()
    for path, row in zip(odd_clips["good"], values, strict=True):
        np.testing.assert_allclose(row, reference_features(path), rtol=1e-4, atol=1e-6)
    y, sr = librosa.load(odd_clips["good"][2], sr=None)
    assert sr == 22050  # it really was another rate, resampled by the extractor


def test_fail_lists_every_bad_file_in_one_error(odd_clips):
    paths = odd_clips["good"][:1] + odd_clips["bad"]
    with pytest.raises(ExtractionError) as err:
        extract_features(paths, FP, n_jobs=2)
    message = str(err.value)
    assert f"{len(odd_clips['bad'])} of {len(paths)} clips failed" in message
    assert "features.on_error: skip" in message
    for path in odd_clips["bad"]:
        assert path.name in message
    assert "empty.wav: AudioError: contains no audio samples" in message
    assert "truncated.wav: AudioError: truncated" in message


def test_skip_leaves_bad_files_out_and_says_why(odd_clips):
    paths = odd_clips["good"] + odd_clips["bad"]
    values, errors = extract_features(paths, FP, n_jobs=2, on_error="skip")
    assert sorted(errors) == list(range(len(odd_clips["good"]), len(paths)))
    assert np.isfinite(values[: len(odd_clips["good"])]).all()
    assert all("Error" in why for why in errors.values())


def run_stage_and_kill(cmd: list[str], cwd: Path, ready: callable, sig: int) -> None:
    log = cwd / "stage.log"
    with open(log, "w") as out:
        # SIGINT as DVC's Ctrl-C delivers it: a shell that started this run in the
        # background leaves SIGINT ignored, and a child would inherit that
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while not ready(log.read_text()) and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert proc.poll() is None, f"stage ended before it could be killed:\n{log.read_text()}"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    log.unlink()


def test_killed_extraction_leaves_previous_outputs(esc50_zip, tmp_path):
    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path / "raw")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["features"]["n_jobs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    previous = {"features.parquet": b"PAR1 previous good output", "features.json": b"{}",
                "skipped.csv": b"filename,error\n"}
    for name, data in previous.items():
        (tmp_path / name).write_bytes(data)
    cmd = [sys.executable, "-m", "stages.feature_extraction", "esc50", "raw",
           "features.parquet", "features.json", "skipped.csv", "--cache", "cache"]
    run_stage_and_kill(cmd, tmp_path, lambda log: re.search(r" [1-9]\d*/60 \[", log),
                       signal.SIGKILL)
    for name, data in previous.items():
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == sorted(
        [*previous, "params.yaml", "raw"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_write_killed_midway_keeps_the_previous_file(tmp_path, sig):
    dest = tmp_path / "metrics.json"
    dest.write_text('{"accuracy": 0.5}')
    script = tmp_path / "slow_writer.py"
    script.write_text(
        "import sys, time\n"
        "from soundclf.io import write_with\n"
        "def slow(tmp):\n"
        "    with open(tmp, 'w') as f:\n"
        "        f.write('{\"accur'); f.flush()\n"
        "        print('half written', flush=True)\n"
        "        time.sleep(600)\n"
        f"write_with({str(dest)!r}, slow)\n"
    )
    run_stage_and_kill([sys.executable, str(script)], tmp_path,
                       lambda log: "half written" in log, sig)
    assert dest.read_text() == '{"accuracy": 0.5}'
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    if sig == signal.SIGINT:  # Ctrl-C (what DVC sends) runs the clean-up
        assert leftovers == []
    else:  # SIGKILL runs nothing: at most the one hidden temporary file being written
        assert len(leftovers) <= 1
        assert all(re.fullmatch(r"\.metrics\.json\..+\.tmp", name) for name in leftovers)


def test_skip_mode_stage_records_skipped_clips(esc50_zip, tmp_path, monkeypatch):
    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path / "raw")
    bad = tmp_path / "raw/ESC-50-master/audio/2-102000-A-0.wav"
    bad.write_bytes(b"")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["features"].update(n_jobs=1, on_error="skip")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    args = ["esc50", "raw", "f.parquet", "f.json", "skipped.csv", "--cache", "cache"]
    feature_extraction.main(args)
    assert json.loads(Path("f.json").read_text()) == {"clips": 59, "skipped": 1}
    skipped = pd.read_csv("skipped.csv")
    assert list(skipped["filename"]) == ["2-102000-A-0.wav"]
    assert "not a readable audio file" in skipped["error"][0]
    table = pd.read_parquet("f.parquet")
    assert len(table) == 59 and "2-102000-A-0.wav" not in set(table["filename"])

    params["features"]["on_error"] = "fail"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit, match="(?s)1 of 60 clips failed.*2-102000-A-0.wav: AudioError"):
        feature_extraction.main(args)
    assert len(pd.read_parquet("f.parquet")) == 59  # the previous output is untouched


def test_weights_of_another_checksum_over_http_are_not_kept(flaky_server, tmp_path):
    """A download that is not the checkpoint expected is deleted: a rerun fetches anew."""
    checkpoint = tmp_path / "checkpoint.pth"
    write_demo_weights(checkpoint)
    url = flaky_server(checkpoint.read_bytes(), drops=0)
    params = {"weights": {"aisfx": {"url": url, "sha256": "0" * 64}}}
    cache, out = tmp_path / "cache", tmp_path / "weights/aisfx"
    with pytest.raises(WeightsError, match=r"not the 0{64} of 'weights.aisfx.sha256'.*"
                                           r"\(the downloaded file was deleted\)"):
        fetch_weights("aisfx", params, out, cache)
    assert list(cache.iterdir()) == [] and not out.exists()
