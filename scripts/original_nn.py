"""Run the original analysis' NN call as it was written, to see which split it scored.

    python scripts/original_nn.py data/features/esc50.parquet [--valid-fold 5] [--seeds 0 1 2]

The original script called ``TabularDataLoaders.from_df(df, cont_names=<all features>,
y_names=<label>, splits=<folds 1-4 / fold 5>, bs=64)`` with no procs, then
``tabular_learner(dls, layers=..., metrics=accuracy)`` and ``fit_one_cycle(10, 1e-3)``.
``from_df`` takes ``valid_idx``, not ``splits``: the argument is passed on and ignored, and
fastai splits 80/20 at random over all clips. This script makes that call on the pipeline's
raw feature table (``feature-extraction``'s output: unscaled, as the original) for each
seed, and beside it the same network trained with ``valid_idx`` set to the fold, so both
splits are scored in one run. For the random split it also counts the validation clips
that share a recording (``src_file``) and class with a training clip: the leak the
official folds prevent. Prints a Markdown table of accuracies per seed and their means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.tabular.all import TabularDataLoaders, accuracy, set_seed, tabular_learner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf.table import feature_columns  # noqa: E402

LAYERS = {"NN [200, 100]": [200, 100], "NN [400, 300, 200, 100, 50]": [400, 300, 200, 100, 50]}


def original_run(table: pd.DataFrame, layers: list[int], seed: int, fold_rows: list[int],
                 as_written: bool) -> tuple[float, np.ndarray]:
    """Validation accuracy and validation rows of the original call (``as_written``:
    ``splits=`` the fold, which fastai ignores) or of the same call with ``valid_idx``."""
    set_seed(seed, reproducible=True)
    features = feature_columns(list(table.columns))
    frame = table[[*features, "label"]]
    if as_written:
        train_rows = sorted(set(range(len(table))) - set(fold_rows))
        split = {"splits": (train_rows, fold_rows)}
    else:
        split = {"valid_idx": fold_rows}
    dls = TabularDataLoaders.from_df(frame, cont_names=features, y_names="label", bs=64,
                                     **split)
    learn = tabular_learner(dls, layers=layers, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(10, 1e-3)
        score = float(learn.validate()[1])
    return score, np.asarray(dls.valid.items.index)


def leaked(table: pd.DataFrame, valid_rows: np.ndarray) -> int:
    """Validation clips whose recording and class also have a clip in training."""
    is_valid = np.isin(np.arange(len(table)), valid_rows)
    pairs = list(zip(table["src_file"], table["label"], strict=True))
    trained = {p for p, v in zip(pairs, is_valid, strict=True) if not v}
    return sum(p in trained for p, v in zip(pairs, is_valid, strict=True) if v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path, help="feature-extraction's parquet (ESC-50)")
    parser.add_argument("--valid-fold", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    table = pd.read_parquet(args.features).reset_index(drop=True)
    fold_rows = list(np.flatnonzero(table["fold"] == args.valid_fold))
    print(f"{len(table)} clips, folds {sorted(map(int, table['fold'].unique()))}; fold "
          f"{args.valid_fold}: {len(fold_rows)} clips")
    print("| model | split | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|---|" + "---|" * (len(args.seeds) + 1))
    for name, layers in LAYERS.items():
        for split, as_written in (("as written (random 80/20)", True),
                                  (f"fold {args.valid_fold}", False)):
            scores, leaks = [], []
            for seed in args.seeds:
                score, rows = original_run(table, layers, seed, fold_rows, as_written)
                scores.append(score)
                leaks.append(leaked(table, rows))
            note = f"; {np.mean(leaks):.0f} of {len(rows)} validation clips leak" if any(
                leaks) else ""
            print(f"| {name} | {split}{note} | "
                  + " | ".join(f"{100 * s:.2f}" for s in scores)
                  + f" | {100 * np.mean(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()
