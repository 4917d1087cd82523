"""Assembling a dataset: fetch its archives, extract them, check its layout.

The dataset is assembled in a temporary folder that replaces the output folder only once
every archive is extracted and every clip its metadata lists is present, so the output is
never half-extracted and a failed run keeps the previous one.
"""

from __future__ import annotations

import os
from pathlib import Path

from soundclf.data.archive import copy_folder, extract, fetch
from soundclf.data.datasets import LayoutError, adapter_for, check_clips_present, summary
from soundclf.data.folder import Folder, assemble
from soundclf.io import atomic_dir
from soundclf.params import get


def download(dataset: str, params: dict, out_dir: Path, cache_dir: Path) -> dict[str, int]:
    """Build OUT_DIR for ``dataset``; returns its clip and class counts."""
    adapter = adapter_for(dataset, params)
    if isinstance(adapter, Folder):  # read in place, or an archive extracted
        with atomic_dir(out_dir) as tmp:
            return assemble(dataset, params, tmp, cache_dir)
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
