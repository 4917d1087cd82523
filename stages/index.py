"""Stage `index`: the state of a dataset's sources (soundclf.data.index), run on every
``dvc repro`` so that a change to a local folder read in place reruns what it affects.

    python -m stages.index DATASET OUT_JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from soundclf.data.index import index
from soundclf.io import write_text
from soundclf.params import ParamError, load_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        found = index(args.dataset, load_params())
    except ParamError as exc:
        sys.exit(f"index {args.dataset}: {exc}")
    write_text(args.out, json.dumps(found, indent=1) + "\n")
    files = sum(len(source.get("files", [])) for source in found.values())
    print(f"index {args.dataset}: {len(found)} source(s), {files} local file(s) -> {args.out}")


if __name__ == "__main__":
    main()
