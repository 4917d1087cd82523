"""An encoder's weights as a Hugging Face Hub repository: fetched at a pinned commit, each
file checked by its SHA-256.

``weights.<encoder>`` (clap, ast) has ``repo`` (owner/name), ``revision`` (the commit;
null: the newest, with a warning), ``url`` (null: the Hub; else a local copy, a folder or
a ``file://`` URL of one, used with no network) and ``sha256`` (each file's digest,
``{config.json: <hex>, ...}``; null: not checked, with a warning listing the digests
found, to paste into params.yaml). With digests, exactly those files are fetched; without,
the files a model, its feature extractor and tokenizer need (:data:`PATTERNS`). The
stage `weights` writes them into ``data/weights/<encoder>/`` only once all are there and
checked and ``transformers`` loads the model from them (soundclf.features.audio_transformers).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from soundclf.data.archive import local_path, sha256sum
from soundclf.features.encoders import WeightsError, encoder, unpinned
from soundclf.io import atomic_dir

# what a repository's copy needs: configurations, tokenizer files and the weights (as
# safetensors; a repository with only pytorch_model.bin: list its files in sha256)
PATTERNS = ("*.json", "*.txt", "*.safetensors")


def wanted(name: str, digests: dict | None) -> bool:
    """Whether a file of the repository is part of the copy."""
    return name in digests if digests else any(fnmatch.fnmatch(name, p) for p in PATTERNS)


def download(repo: str, revision: str | None, digests: dict | None, dest: Path,
             cache_dir: Path, param: str) -> None:
    """The repository's files into ``dest`` from the Hub (huggingface_hub)."""
    from huggingface_hub import snapshot_download
    try:
        snapshot_download(repo_id=repo, revision=revision, local_dir=dest,
                          cache_dir=cache_dir / "huggingface",
                          allow_patterns=list(digests) if digests else list(PATTERNS))
    except Exception as exc:  # no network, a wrong name or commit: many kinds, all fatal
        at = f"@{revision}" if revision else ""
        raise WeightsError(
            f"could not fetch https://huggingface.co/{repo}{at} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}). Offline: copy the "
            f"repository elsewhere (huggingface-cli download {repo}"
            f"{f' --revision {revision}' if revision else ''} --local-dir DIR) and set "
            f"'{param}' to that folder") from None
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping


def copy_local(folder: Path, digests: dict | None, dest: Path, url: str, param: str) -> None:
    """The repository's files from a local copy."""
    if not folder.is_dir():
        raise WeightsError(f"'{param}' is {url}: {folder} is not a folder (a copy of the "
                           "repository's files)")
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not name.startswith(".") and wanted(name, digests):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / name)


def file_digests(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 in ``folder``, by its path inside it."""
    return {p.relative_to(folder).as_posix(): sha256sum(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_digests(name: str, section: dict, folder: Path, where: str) -> dict[str, str]:
    """The files' digests, refused unless each file ``sha256`` lists is there with its
    digest; with no digests, a warning listing them."""
    found = file_digests(folder)
    expected = section["sha256"]
    if not expected:
        unpinned(name, f"the files of {where} are", json.dumps(found, sort_keys=True))
        return found
    for file, digest in expected.items():
        if file not in found:
            raise WeightsError(f"{where} has no file {file}, which 'weights.{name}.sha256' "
                               "lists")
        if found[file] != digest.lower():
            raise WeightsError(f"{file} of {where} has sha256 {found[file]}, not the "
                               f"{digest.lower()} of 'weights.{name}.sha256': not the files "
                               "expected")
    return found


def identity(found: dict[str, str]) -> str:
    """One digest for a copy's files and their digests."""
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()


def fetch_repository(name: str, params: dict, out: Path, cache_dir: Path) -> str:
    """Write encoder ``name``'s verified repository files into the folder ``out``; returns
    where they came from."""
    from soundclf.features import audio_transformers

    section = params["weights"][name]
    repo, revision, url, digests = (section["repo"], section["revision"], section["url"],
                                    section["sha256"])
    where = url or f"https://huggingface.co/{repo}" + (f"@{revision}" if revision else "")
    with atomic_dir(out) as tmp:
        if url is None:
            if revision is None:
                print(f"warning: 'weights.{name}.revision' is null: {repo} is fetched as it "
                      "is now, not at a pinned commit", file=sys.stderr)
            with tempfile.TemporaryDirectory(dir=tmp.parent) as staging:
                download(repo, revision, digests, Path(staging), cache_dir,
                         f"weights.{name}.url")
                copy_local(Path(staging), digests, tmp, where, f"weights.{name}.url")
        else:
            folder = local_path(url)
            if not folder.exists():
                raise WeightsError(f"'weights.{name}.url': {folder} does not exist (from "
                                   f"{url})")
            copy_local(folder, digests, tmp, url, f"weights.{name}.url")
        check_digests(name, section, tmp, where)
        # a copy transformers cannot load is refused here, not when every clip waits for it
        try:
            audio_transformers.load_model(name, tmp, "cpu")
        except WeightsError as exc:
            raise WeightsError(str(exc).replace(str(tmp), where)) from None
    return where


def verify_repository(name: str, section: dict, folder: Path) -> str:
    """The files of ``folder`` (stage weights' output) checked against ``sha256``; their
    identity (:func:`identity`)."""
    encoder(name)
    if not folder.is_dir():
        raise WeightsError(f"{folder} does not exist: the stage `weights` fetches it from "
                           f"'weights.{name}' (dvc repro weights@{name})")
    return identity(check_digests(name, section, folder, str(folder)))
