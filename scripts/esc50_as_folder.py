"""Lay an ESC-50-layout folder out as a dataset of the folder kind (docs/folders.md).

    python scripts/esc50_as_folder.py ESC50_FOLDER OUT [--metadata fold,group | group | none]

Each clip of ``ESC50_FOLDER`` (``meta/esc50.csv`` and ``audio/``) becomes
``OUT/<category>/<filename>``, a hard link to the original where the filesystem allows it
(a copy otherwise). ``--metadata fold,group`` (the default) also writes ``OUT/metadata.csv``
in esc50.csv's row order: ``file_name``, ``label``, ``fold`` (the official fold) and
``group`` (``src_file``, the recording a clip was cut from); ``group`` writes it without
the folds (folds generated, recordings kept apart); ``none`` writes no table (label
folders alone: folds generated, recordings not kept apart). It measures what the folder
kind gives on the same clips as the ``esc50`` adapter (docs/results.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("esc50", type=Path, help="an ESC-50-layout folder (meta/, audio/)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--metadata", choices=["fold,group", "group", "none"],
                        default="fold,group")
    args = parser.parse_args()
    meta = pd.read_csv(args.esc50 / "meta" / "esc50.csv", dtype={"src_file": str})
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    for row in meta.itertuples():
        dest = args.out / row.category / row.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(args.esc50 / "audio" / row.filename, dest)
        except OSError:
            shutil.copy2(args.esc50 / "audio" / row.filename, dest)
    if args.metadata != "none":
        table = pd.DataFrame({"file_name": meta["category"] + "/" + meta["filename"],
                              "label": meta["category"], "fold": meta["fold"],
                              "group": meta["src_file"]})
        if args.metadata == "group":
            table = table.drop(columns="fold")
        table.to_csv(args.out / "metadata.csv", index=False)
    print(f"{len(meta)} clips, {meta['category'].nunique()} label folders -> {args.out}"
          + ("" if args.metadata == "none" else f" (metadata.csv: {args.metadata})"))


if __name__ == "__main__":
    main()
