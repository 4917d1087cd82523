"""What a dataset's sources are right now, cheaply: the fingerprint the ``index`` stage
writes on every ``dvc repro`` so that DVC notices a change to a local folder it reads in
place.

DVC hashes the dependencies dvc.yaml names, and a user's folder outside the project cannot
be named there for some datasets and not others (``foreach: ${datasets}``). So the
``index`` stage runs always (``always_changed``) and writes, for each source of the
dataset, each file's path, size and modification time (a local folder), the size and time
of a local file, or the URL. Its output changes only when the sources do; DVC then reruns
``download`` and, as the clips it lists change, what reads them. Nothing is read but the
folder's listing: a second for tens of thousands of files.
"""

from __future__ import annotations

import os
from pathlib import Path

from soundclf.data.archive import DownloadError, local_path


def locations(name: str, params: dict) -> dict[str, str]:
    """The params key and value of each source of dataset ``name``: a folder dataset's
    ``path``, a built-in one's ``url`` keys (``url``; ``audio_url``, ``meta_url``). Read
    from the params alone: this runs on every repro, so it imports no dataset code."""
    section = params["data"][name]
    keys = ["path"] if "kind" in section else [k for k in section if k.endswith("url")]
    return {f"data.{name}.{key}": str(section[key]) for key in keys}


def fingerprint(url: str) -> dict:
    """The state of one source: every file under a local folder (path, size, mtime in ns;
    links as what they point at), a local file's size and mtime, or just the URL."""
    try:
        path = local_path(url)
    except DownloadError as exc:
        return {"url": url, "error": str(exc)}  # the download stage names it
    if path is None:
        return {"url": url}
    if path.is_file():
        stat = path.stat()
        return {"file": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if not path.is_dir():
        return {"missing": str(path)}
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for file in sorted(names):
            full = Path(folder) / file
            try:
                stat = full.stat()
            except OSError:  # a broken link: the download stage names it
                files.append([full.relative_to(path).as_posix(), None, None])
                continue
            files.append([full.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns])
        for d in dirs:  # a linked folder is not followed (os.walk): its name and target
            if (Path(folder) / d).is_symlink():
                files.append([(Path(folder) / d).relative_to(path).as_posix(),
                              os.readlink(Path(folder) / d), None])
    return {"folder": str(path.resolve()), "files": files}


def index(name: str, params: dict) -> dict:
    """Each source of dataset ``name``, by its params key, with its fingerprint."""
    return {key: fingerprint(url) for key, url in locations(name, params).items()}
