"""Fetching dataset archives (http(s), file:// or a local path) and extracting them safely.

Remote archives are streamed with a progress bar into a download cache folder as a
``.part`` file (resumed with HTTP Range requests after a dropped connection, retried with
exponential backoff), checked against their SHA-256 when one is given, and renamed into
place only when complete. Extraction refuses members that would land outside the target
(absolute paths, ``..``, links) before writing anything.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

CHUNK = 1 << 16  # small enough that a dropped connection loses little
TIMEOUT_S = (15, 60)  # seconds to connect, and to wait for the next bytes
RETRIES = 4
BACKOFF_S = 2.0


class DownloadError(RuntimeError):
    """A source that could not be fetched, verified or unpacked."""


def local_path(url: str) -> Path | None:
    """The filesystem path a ``file://`` URL or a plain path points at; None for http(s)."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # not a Windows drive letter
        raise DownloadError(f"unsupported URL scheme '{parsed.scheme}' in {url}")
    return Path(url).expanduser()


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, what: str) -> None:
    if not expected:
        return
    actual = sha256sum(path)
    if actual.lower() != expected.lower():
        raise DownloadError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}"
        )


class _Incomplete(Exception):
    """The server closed the connection before the whole file arrived."""


def _stream(url: str, part: Path) -> None:
    """Append the rest of ``url`` to ``part``, resuming with an HTTP Range request."""
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    with requests.get(url, stream=True, timeout=TIMEOUT_S, headers=headers) as response:
        if response.status_code == 416:  # nothing left to send: start again to be sure
            part.unlink()
            raise _Incomplete("server refused the resume range")
        response.raise_for_status()
        if done and response.status_code != 206:
            done = 0  # the server ignored the Range header: start from the beginning
        length = response.headers.get("content-length")
        total = done + int(length) if length else None
        with open(part, "ab" if done else "wb") as f, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, desc=f"download {part.name}"
        ) as bar:
            for chunk in response.iter_content(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _Incomplete(f"got {part.stat().st_size} of {total} bytes")


def _download(url: str, dest: Path, retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, retrying with exponential backoff.

    Each retry resumes where the partial file ends; an interrupted stage resumes the same
    way on its next run. ``dest`` appears only once complete.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _stream(url, part)
            part.replace(dest)
            return
        except requests.HTTPError as exc:
            status = exc.response.status_code
            if status < 500 and status != 429:  # not found, forbidden...: retrying won't help
                raise DownloadError(f"could not download {url}: {exc}") from None
            error: Exception = exc
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError, _Incomplete) as exc:
            error = exc  # a dropped or stalled connection: resume after a pause
        except requests.RequestException as exc:  # a malformed URL and the like
            raise DownloadError(f"could not download {url}: {exc}") from None
        if attempt == retries:
            raise DownloadError(
                f"could not download {url} after {retries + 1} attempts: {error}"
            ) from None
        wait = backoff_s * 2**attempt
        have = part.stat().st_size if part.exists() else 0
        print(f"download interrupted ({error}); retrying in {wait:g} s from byte {have}")
        time.sleep(wait)


def fetch(url: str, sha256: str | None, cache_dir: Path, param: str) -> Path:
    """A local file or folder holding what ``url`` names, verified against ``sha256``.

    Local paths are used in place. Remote files are kept in ``cache_dir`` so that a stage
    rerun for another reason does not download hundreds of MB again; a cached file is
    reused only for the same URL and, when given, the same checksum.
    """
    path = local_path(url)
    if path is not None:
        if not path.exists():
            raise DownloadError(f"{param}: {path} does not exist (from {url})")
        if path.is_file():
            verify_sha256(path, sha256, str(path))
        return path

    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    name = PurePosixPath(urlparse(url).path).name or "download"
    dest = cache_dir / f"{key}-{name}"
    if not dest.exists():
        try:
            _download(url, dest)
        except DownloadError as exc:
            raise DownloadError(
                f"{exc}\nIf you are offline or the URL is blocked, download the file "
                f"yourself and point the pipeline at it:  dvc exp run -S {param}=/path/{name}"
            ) from None
    try:
        verify_sha256(dest, sha256, url)
    except DownloadError as exc:
        dest.unlink()  # a later run downloads it afresh
        raise DownloadError(f"{exc}; the downloaded file was deleted") from None
    return dest


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be extracted, or None when it is safe."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]):
        return "absolute path"
    if ".." in parts:
        return "'..' in path"
    if _is_link(info):
        return "symbolic link"
    return None


def extract(archive: Path, prefixes: tuple[str, ...], target: Path) -> None:
    """Extract the members of ``archive`` under ``prefixes`` into ``target``.

    Every member is checked first: one unsafe member refuses the whole archive.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip archive: {exc}") from None
    with zf:
        members = zf.infolist()
        bad = [(m.filename, why) for m in members if (why := unsafe_member(m))]
        if bad:
            listing = "; ".join(f"{name} ({why})" for name, why in bad[:5])
            raise DownloadError(f"{archive}: refusing unsafe archive members: {listing}")
        wanted = [m for m in members if m.filename.startswith(prefixes)]
        if not wanted:
            tops = sorted({m.filename.split("/")[0] for m in members})[:10]
            raise DownloadError(
                f"{archive}: no members under {', '.join(prefixes)}; "
                f"top-level entries are {tops}"
            )
        for member in tqdm(wanted, desc=f"extract {archive.name}", unit="file"):
            zf.extract(member, target)


def copy_folder(source: Path, prefixes: tuple[str, ...], target: Path) -> None:
    """Copy the ``prefixes`` of an already-extracted dataset folder into ``target``.

    ``source`` may be the archive's top folder itself or the folder that contains it.
    """
    for prefix in prefixes:
        rel = PurePosixPath(prefix.rstrip("/"))
        inner = Path(*rel.parts[1:])  # the path inside the archive's top folder
        found = next((c for c in (source / rel, source / inner) if c.exists()), None)
        if found is None:
            raise DownloadError(f"{source}: expected {rel} or {inner} inside this folder")
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if found.is_dir():
            shutil.copytree(found, dest)
        else:
            shutil.copy2(found, dest)
