"""Stage `download`: fetch a dataset's archives, verify, extract and validate its layout.

    python -m stages.download DATASET OUT_DIR DATASET_METRICS_JSON --cache CACHE_DIR

The dataset is assembled in a temporary folder and renamed to OUT_DIR only once every
archive is extracted and every clip listed in the metadata is present, so OUT_DIR is
never half-extracted. DATASET_METRICS_JSON records how many clips the metadata lists,
how many are used and how many are excluded (FreeSound's multi-label clips, ESC-10's
clips of the other 40 ESC-50 classes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from soundclf.data.archive import DownloadError, copy_folder, extract, fetch
from soundclf.data.datasets import LayoutError, adapter_for, check_clips_present, summary
from soundclf.io import atomic_dir, write_json
from soundclf.params import ParamError, get, load_params


def download(dataset: str, params: dict, out_dir: Path, cache_dir: Path) -> dict[str, int]:
    """Build OUT_DIR for ``dataset``; returns its clip and class counts."""
    adapter = adapter_for(dataset)
    urls = []
    with atomic_dir(out_dir) as tmp:
        for source in adapter.sources:
            url_key = f"data.{dataset}.{source.url_key}"
            urls.append(url := str(get(params, url_key)))
            sha256 = params["data"][dataset].get(source.sha256_key)
            path = fetch(url, sha256, cache_dir, param=url_key)
            if path.is_dir():
                copy_folder(path, source.members, tmp)
            else:
                extract(path, source.members, tmp)
        try:
            listed = adapter.listed(tmp)
            check_clips_present(tmp, adapter, listed)
        except LayoutError as exc:  # name the files as they are inside the archives
            inside = str(exc).replace(f"{tmp}{os.sep}", "")
            raise LayoutError(f"in {' + '.join(urls)}: {inside}") from None
        adapter.prune(tmp, listed)
    return summary(listed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics", type=Path, help="dataset counts (JSON)")
    parser.add_argument("--cache", type=Path, required=True, help="download cache folder")
    args = parser.parse_args(argv)
    try:
        counts = download(args.dataset, load_params(), args.out_dir, args.cache)
    except (DownloadError, LayoutError, ParamError) as exc:
        sys.exit(f"download {args.dataset}: {exc}")
    write_json(args.metrics, counts)
    print(f"download {args.dataset}: {counts['clips_listed']} clips listed, "
          f"{counts['clips_used']} used ({counts['clips_excluded']} excluded), "
          f"{counts['classes']} classes -> {args.out_dir}")


if __name__ == "__main__":
    main()
