"""Stage `weights`: fetch a pretrained encoder's published checkpoint and verify it.

    python -m stages.weights ENCODER OUT_FILE --cache CACHE_DIR

``weights.<ENCODER>.url`` is where the weights are published (for ``aisfx``, its wheel on
PyPI, which holds them as ``aisfx/models/checkpoint.pth``), a ``file://`` URL or a local
path to that archive or to the checkpoint itself; downloads are kept in CACHE_DIR like the
datasets'. The checkpoint must have the SHA-256 ``weights.<ENCODER>.sha256`` and load
strictly into this project's network (soundclf.features.encoders) before it becomes OUT_FILE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.data.archive import DownloadError, fetch, local_path, sha256sum
from soundclf.features.encoders import WeightsError, checkpoint_bytes, encoder, load_network
from soundclf.io import atomic_path
from soundclf.params import ParamError, load_params


def fetch_weights(name: str, params: dict, out: Path, cache_dir: Path) -> str:
    """Write encoder ``name``'s verified checkpoint to ``out``; returns where it came from."""
    enc = encoder(name)
    section = params["weights"][name]
    url, expected = section["url"], section["sha256"].lower()
    source = fetch(url, None, cache_dir, param=f"weights.{name}.url")
    downloaded = local_path(url) is None  # fetched into cache_dir, not the user's own file
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(checkpoint_bytes(source, enc.member))
            actual = sha256sum(tmp)
            if actual != expected:
                inside = f" ({enc.member})" if enc.member else ""
                raise WeightsError(
                    f"{url}{inside} has sha256 {actual}, not the {expected} of "
                    f"'weights.{name}.sha256': not the checkpoint expected. Point "
                    f"'weights.{name}.url' at {enc.published}; for a checkpoint of your own "
                    f"of the same network, in aisfx's format, set 'weights.{name}.sha256' to "
                    "its digest")
            load_network(enc, tmp, "cpu")  # a checkpoint of another network is refused here
    except WeightsError as exc:
        if not downloaded:
            raise
        source.unlink()  # a bad download is not kept: the next run fetches it afresh
        raise WeightsError(f"{exc} (the downloaded file was deleted)") from None
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        source = fetch_weights(args.encoder, load_params(), args.out, args.cache)
    except (DownloadError, WeightsError, ParamError) as exc:
        sys.exit(f"weights {args.encoder}: {exc}")
    print(f"weights {args.encoder}: verified, from {source} -> {args.out}")


if __name__ == "__main__":
    main()
