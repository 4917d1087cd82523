"""Stage `ensemble-member`: one member's class probabilities, checked, where the ensemble
reads them.

    python -m stages.ensemble_member MODEL PROBABILITIES_PARQUET OUT_PARQUET

dvc.yaml runs it for every dataset and every model of ``ensemble.members`` (a ``matrix``),
so that train-ensemble depends on its members' probabilities and on nothing else.
PROBABILITIES_PARQUET (what the model's stage wrote) is copied to OUT_PARQUET once
soundclf.evaluation.probabilities finds it complete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from soundclf.evaluation.probabilities import TrainingError, read_probabilities
from soundclf.io import write_with


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("probabilities", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        read_probabilities(args.model, args.probabilities)
    except (TrainingError, OSError, ValueError) as exc:
        sys.exit(f"ensemble-member: {exc}")
    write_with(args.out, lambda tmp: shutil.copyfile(args.probabilities, tmp))
    print(f"ensemble-member: {args.model}'s probabilities in {args.out}")


if __name__ == "__main__":
    main()
