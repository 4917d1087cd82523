"""Stage `details`: a dataset's figures that are not scores, copied where git keeps them.

    python -m stages.details DATASET RESULTS_DIR METRICS_DIR

RESULTS_DIR (``data/results/<dataset>``) holds what the dataset's stages wrote as cached
outputs: clip counts, skipped clips and every model's figures; they go to METRICS_DIR
(``metrics/<dataset>``), the models' to its ``details/`` (soundclf.reporting.details).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.params import ParamError, load_params
from soundclf.reporting.details import copy_details


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("results", type=Path, help="the stages' figures (data/results/DATASET)")
    parser.add_argument("metrics", type=Path, help="where git keeps them (metrics/DATASET)")
    args = parser.parse_args(argv)
    try:
        copied = copy_details(args.results, args.metrics, args.dataset, load_params())
    except (ParamError, FileNotFoundError) as exc:
        sys.exit(f"details {args.dataset}: {exc}")
    print(f"details {args.dataset}: {len(copied)} file(s) -> {args.metrics}")


if __name__ == "__main__":
    main()
