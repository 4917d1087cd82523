"""Stage `download`: fetch a dataset's archives, verify, extract and validate its layout.

    python -m stages.download DATASET OUT_DIR --cache CACHE_DIR

The dataset is assembled in a temporary folder and renamed to OUT_DIR only once every
archive is extracted and every clip listed in the metadata is present, so OUT_DIR is
never half-extracted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages.archive import DownloadError, copy_folder, extract, fetch
from stages.datasets import LayoutError, adapter_for, check_clips_present
from stages.io import atomic_dir
from stages.params import ParamError, get, load_params


def download(dataset: str, params: dict, out_dir: Path, cache_dir: Path) -> int:
    """Build OUT_DIR for ``dataset``; returns the number of clips it holds."""
    adapter = adapter_for(dataset)
    with atomic_dir(out_dir) as tmp:
        for source in adapter.sources:
            url_key = f"data.{dataset}.{source.url_key}"
            url = str(get(params, url_key))
            sha256 = params["data"][dataset].get(source.sha256_key)
            path = fetch(url, sha256, cache_dir, param=url_key)
            if path.is_dir():
                copy_folder(path, source.members, tmp)
            else:
                extract(path, source.members, tmp)
        meta = adapter.metadata(tmp)
        check_clips_present(tmp, adapter, meta)
    return len(meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        n = download(args.dataset, load_params(), args.out_dir, args.cache)
    except (DownloadError, LayoutError, ParamError) as exc:
        sys.exit(f"download {args.dataset}: {exc}")
    print(f"download {args.dataset}: {n} clips in {args.out_dir}")


if __name__ == "__main__":
    main()
