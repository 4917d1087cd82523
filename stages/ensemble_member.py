"""Stage `ensemble-member`: one member's class probabilities, checked, where the ensemble
reads them.

    python -m stages.ensemble_member MODEL PROBABILITIES_PARQUET OUT_PARQUET

dvc.yaml runs it for every dataset and every model of ``ensemble.members`` (a ``matrix``),
so that the ensemble depends on its members' probabilities and on nothing else: adding a
member reruns it, a change to a model that is not a member does not. PROBABILITIES_PARQUET
is what the model's stage wrote (stages.train ``--probabilities``); it is copied to
OUT_PARQUET once it is known to be complete: every round with out-of-fold probabilities of
its training clips, and valid probabilities.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from stages.evaluate import TrainingError, check_probabilities
from stages.io import write_with
from stages.table import PREFIX

COLUMNS = ["round", "split", "filename", "label", "fold"]


def check(model: str, path: Path) -> None:
    """Refuse a probabilities table that the ensemble could not learn from, naming it."""
    table = pd.read_parquet(path)
    classes = [c for c in table.columns if c.startswith(PREFIX)]
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing or not classes:
        raise TrainingError(f"{path} is not a probabilities table of stages.train (missing "
                            f"{', '.join(missing) or 'the p_<class> columns'})")
    for name, part in table.groupby("round", sort=False):
        for split in ("train", "valid"):
            if not (part["split"] == split).any():
                raise TrainingError(f"{path} has no {split} clips in round {name}: rerun "
                                    f"train-{model}" + (" with oof.folds 1 or more (0 "
                                                        "writes no out-of-fold rows)"
                                                        if split == "train" else ""))
    check_probabilities(table[classes].to_numpy(), f"{model} ({path})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("probabilities", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        check(args.model, args.probabilities)
    except (TrainingError, OSError, ValueError) as exc:
        sys.exit(f"ensemble-member: {exc}")
    write_with(args.out, lambda tmp: shutil.copyfile(args.probabilities, tmp))
    print(f"ensemble-member: {args.model}'s probabilities in {args.out}")


if __name__ == "__main__":
    main()
