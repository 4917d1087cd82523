"""The download stage on synthetic archives served from local paths and file:// URLs."""

import functools
import hashlib
import http.server
import socket
import threading
import zipfile

import pytest

from soundclf.data import archive
from soundclf.data.archive import DownloadError, extract, fetch
from soundclf.data.datasets import LayoutError
from soundclf.data.download import download


def params_for(url, sha256=None):
    return {"data": {"esc50": {"url": str(url), "sha256": sha256, "valid_fold": 5}}}


def test_zip_by_path_and_file_url_gives_meta_and_audio_only(esc50_zip, tmp_path):
    out = tmp_path / "raw"
    counts = download("esc50", params_for(esc50_zip), out, tmp_path / "cache")
    assert counts == {"clips_listed": 60, "clips_used": 60, "clips_excluded": 0, "classes": 4}
    assert sorted(p.name for p in (out / "ESC-50-master").iterdir()) == ["audio", "meta"]
    assert len(list((out / "ESC-50-master" / "audio").glob("*.wav"))) == 60

    digest = hashlib.sha256(esc50_zip.read_bytes()).hexdigest()
    out2 = tmp_path / "raw2"
    download("esc50", params_for(esc50_zip.as_uri(), digest), out2, tmp_path / "cache")
    assert (out2 / "ESC-50-master" / "meta" / "esc50.csv").read_bytes() == (
        out / "ESC-50-master" / "meta" / "esc50.csv").read_bytes()
    assert not list(tmp_path.glob("cache/*")), "local archives are used in place"


def test_extracted_folder_is_accepted(esc50_zip, tmp_path):
    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path / "unzipped")
    out = tmp_path / "raw"
    # the archive's top folder, renamed as a git clone would name it
    (tmp_path / "unzipped" / "ESC-50-master").rename(tmp_path / "ESC-50")
    counts = download("esc50", params_for(tmp_path / "ESC-50"), out, tmp_path / "cache")
    assert counts["clips_used"] == 60


def test_checksum_mismatch_fails_and_keeps_previous_output(esc50_zip, tmp_path):
    out = tmp_path / "raw"
    download("esc50", params_for(esc50_zip), out, tmp_path / "cache")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(DownloadError, match="checksum mismatch.*expected sha256 0{64}"):
        download("esc50", params_for(esc50_zip, "0" * 64), out, tmp_path / "cache")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".raw")] == []


def test_missing_clip_is_named(esc50_zip, tmp_path):
    broken = tmp_path / "ESC-50-master.zip"
    with zipfile.ZipFile(esc50_zip) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("/1-101000-A-0.wav"):
                dst.writestr(item, src.read(item))
    with pytest.raises(LayoutError, match=r"1 of 60 clips .* missing .*1-101000-A-0\.wav"):
        download("esc50", params_for(broken), tmp_path / "raw", tmp_path / "cache")
    assert not (tmp_path / "raw").exists()


def test_missing_metadata_column_is_named(esc50_zip, tmp_path):
    broken = tmp_path / "ESC-50-master.zip"
    with zipfile.ZipFile(esc50_zip) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("esc50.csv"):
                data = data.replace(b"category", b"klass")
            dst.writestr(item, data)
    with pytest.raises(LayoutError, match=r"esc50\.csv: missing column\(s\) \['category'\]"):
        download("esc50", params_for(broken), tmp_path / "raw", tmp_path / "cache")


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ESC-50-master/../../x"])
def test_unsafe_members_refuse_the_whole_archive(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ESC-50-master/meta/esc50.csv", "filename\n")
        zf.writestr(zipfile.ZipInfo(member), "owned")
    target = tmp_path / "target"
    with pytest.raises(DownloadError, match="refusing unsafe archive members"):
        extract(archive, ("ESC-50-master/",), target)
    assert not target.exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("ESC-50-master/audio/link.wav")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        extract(archive, ("ESC-50-master/",), tmp_path / "target")


def test_unreachable_url_names_url_and_param(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ESC-50-master.zip"
    waits = []  # the retries' backoff, recorded instead of slept (30 s)
    monkeypatch.setattr(archive.time, "sleep", waits.append)
    with pytest.raises(DownloadError) as err:
        fetch(url, None, tmp_path / "cache", param="data.esc50.url")
    assert waits == [archive.BACKOFF_S * 2**k for k in range(archive.RETRIES)]
    message = str(err.value)
    assert url in message and "dvc exp run -S data.esc50.url=/path/ESC-50-master.zip" in message
    assert not list((tmp_path / "cache").glob("*"))


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(DownloadError, match=r"data\.esc50\.url: .*nope\.zip does not exist"):
        fetch(str(tmp_path / "nope.zip"), None, tmp_path / "cache", param="data.esc50.url")


def test_not_a_zip_is_reported(tmp_path):
    fake = tmp_path / "ESC-50-master.zip"
    fake.write_text("<html>rate limited</html>")
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        download("esc50", params_for(fake), tmp_path / "raw", tmp_path / "cache")


@pytest.fixture
def http_server(esc50_zip):
    """Serve the synthetic archive's folder on 127.0.0.1; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(esc50_zip.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_download_is_cached_and_verified(esc50_zip, http_server, tmp_path):
    url = f"{http_server}/{esc50_zip.name}"
    digest = hashlib.sha256(esc50_zip.read_bytes()).hexdigest()
    out, cache = tmp_path / "raw", tmp_path / "cache"
    assert download("esc50", params_for(url, digest), out, cache)["clips_used"] == 60
    cached = list(cache.iterdir())
    assert [p.name.endswith("-ESC-50-master.zip") for p in cached] == [True]
    assert cached[0].read_bytes() == esc50_zip.read_bytes()
    mtime = cached[0].stat().st_mtime_ns
    download("esc50", params_for(url, digest), out, cache)  # a rerun reuses the download
    assert cached[0].stat().st_mtime_ns == mtime

    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(url, "f" * 64, cache, param="data.esc50.url")
    assert list(cache.iterdir()) == [], "a file failing its checksum is not kept"
