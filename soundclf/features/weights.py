"""Fetching a pretrained encoder's published weights and verifying them, into the folder
``data/weights/<encoder>/`` (stage `weights`).

A Hugging Face Hub repository (clap, ast): soundclf.features.hub. A checkpoint (aisfx,
panns_cnn14): ``weights.<encoder>.url`` is where it is published (for ``aisfx``, its wheel
on PyPI, which holds it as ``aisfx/models/checkpoint.pth``; for ``panns_cnn14``, the file
on Zenodo), a ``file://`` URL or a local path to that archive or to the checkpoint itself.
The checkpoint must have the SHA-256 ``weights.<encoder>.sha256`` (where that is null, not
pinned, a warning gives the digest to pin) and load strictly into the project's network
(soundclf.features.encoders); it is written as the folder's ``checkpoint.pth``; a bad
download is deleted.
"""

from __future__ import annotations

from pathlib import Path

from soundclf.data.archive import fetch, local_path, sha256sum
from soundclf.features.encoders import (
    CHECKPOINT,
    WeightsError,
    checkpoint_bytes,
    encoder,
    load_network,
    unpinned,
)
from soundclf.io import atomic_dir, atomic_path


def fetch_weights(name: str, params: dict, out: Path, cache_dir: Path) -> str:
    """Write encoder ``name``'s verified weights into the folder ``out``; returns where they
    came from."""
    if encoder(name).hub:
        from soundclf.features.hub import fetch_repository
        return fetch_repository(name, params, out, cache_dir)
    with atomic_dir(out) as tmp:
        source = fetch_checkpoint(name, params, tmp / CHECKPOINT, cache_dir)
    return source


def fetch_checkpoint(name: str, params: dict, out: Path, cache_dir: Path) -> str:
    """Write encoder ``name``'s verified checkpoint to the file ``out``; returns where it
    came from."""
    enc = encoder(name)
    section = params["weights"][name]
    url, expected = section["url"], section["sha256"]
    source = fetch(url, None, cache_dir, param=f"weights.{name}.url")
    downloaded = local_path(url) is None  # fetched into cache_dir, not the user's own file
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(checkpoint_bytes(source, enc.member))
            actual = sha256sum(tmp)
            if expected is None:
                unpinned(name, f"{url} is", actual)
            elif actual != expected.lower():
                inside = f" ({enc.member})" if enc.member else ""
                raise WeightsError(
                    f"{url}{inside} has sha256 {actual}, not the {expected.lower()} of "
                    f"'weights.{name}.sha256': not the checkpoint expected. Point "
                    f"'weights.{name}.url' at {enc.published}; for a checkpoint of your own "
                    f"of the same network, in {name}'s format, set 'weights.{name}.sha256' to "
                    "its digest")
            load_network(enc, tmp, "cpu")  # a checkpoint of another network is refused here
    except WeightsError as exc:
        if not downloaded:
            raise
        source.unlink()  # a bad download is not kept: the next run fetches it afresh
        raise WeightsError(f"{exc} (the downloaded file was deleted)") from None
    return url
