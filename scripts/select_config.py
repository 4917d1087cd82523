"""Choose a configuration by cross-validation on the training folds only; print its command.

    python scripts/select_config.py esc50                      # nn-2layer, the default grid
    python scripts/select_config.py esc50 --model svc --grid svc.C=0.01,0.1,1 \
        --grid normalize.scaler=none,standard

The held-out split of params.yaml (ESC-50's ``valid_fold``, FreeSound's ``split_seed``
split) is set aside before anything else: every candidate is scored only on inner rounds
of the remaining clips (ESC-50: each other official fold in turn, so recordings never
straddle; FreeSound: ``--inner-folds`` stratified folds), each inner round with its own
scaler, by the stages' own training code. The candidate with the best mean inner accuracy
wins. The script prints every candidate's mean and standard deviation and the one
``dvc exp run`` that runs the winner through the pipeline, which then scores it once on
the held-out split. Everything is also written to --out (JSON).

A candidate is params.yaml with one value per --grid axis (KEY=V1,V2,...; values are YAML).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages import train_ensemble, train_nn, train_svc  # noqa: E402
from stages.audio import feature_columns  # noqa: E402
from stages.datasets import adapter_for  # noqa: E402
from stages.evaluate import Scores, Split, predictions_table  # noqa: E402
from stages.io import write_json  # noqa: E402
from stages.normalize import normalize  # noqa: E402
from stages.params import (  # noqa: E402
    MODELS,
    format_value,
    load_params,
    parse_value,
    validate,
)

# What the original write-up proposed to try next, on the 2-layer NN: 16 candidates.
DEFAULT_GRID = {
    "normalize.scaler": ["none", "standard"],
    "nn.ps": [0.0, 0.25],
    "nn.wd": [None, 0.1],
    "nn.epochs": [10, 30],
}


def parse_axis(text: str) -> tuple[str, list]:
    key, sep, values = text.partition("=")
    if not sep or not values:
        raise SystemExit(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. nn.ps=0,0.25)")
    return key, [parse_value(v) for v in values.split(",")]


def candidates(params: dict, grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, each checked as a whole params.yaml."""
    found = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        validate(with_overrides(params, overrides), "--grid")
        found.append(overrides)
    return found


def with_overrides(params: dict, overrides: dict) -> dict:
    changed = copy.deepcopy(params)
    for key, value in overrides.items():
        *sections, leaf = key.split(".")
        node = changed
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return changed


def inner_rounds(train: pd.DataFrame, n_folds: int, seed: int) -> dict[str, np.ndarray]:
    """Validation masks over the training clips: the official folds, or stratified folds."""
    if "fold" in train:
        return {f"fold{f}": (train["fold"] == f).to_numpy() for f in sorted(train["fold"].unique())}
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    found = {}
    for k, (_, valid) in enumerate(folds.split(np.zeros(len(train)), train["label"]), 1):
        found[f"inner{k}"] = np.isin(np.arange(len(train)), valid)
    return found


def fit_predict(model: str, params: dict, split: Split):
    """The stage's own training of ``model`` on one round: its RoundResult."""
    if model == "svc":
        return train_svc.fit_predict(params, split)[1]
    if model == "ensemble":
        return train_ensemble.fit_predict(params, split)[1]
    return train_nn.fit_predict(train_nn.nn_settings(params, train_nn.LAYERS_KEYS[model]),
                                split)[1]


def score(model: str, params: dict, train: pd.DataFrame, rounds: dict[str, np.ndarray]) -> dict:
    features = feature_columns(list(train.columns))
    results = []
    for name, is_valid in rounds.items():
        part, _ = normalize(train, is_valid, params["normalize"]["scaler"])
        results.append(fit_predict(model, params, Split(name, part, features)))
    scores = Scores.of(predictions_table(results))
    return {**scores.mean, "std": scores.std, "rounds": scores.rounds}


def command(overrides: dict, name: str) -> str:
    flags = " ".join(f"-S '{key}={format_value(value)}'" for key, value in overrides.items())
    return f"dvc exp run -n {name} {flags}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--features", type=Path, help="default: data/features/DATASET.parquet")
    parser.add_argument("--model", default="nn-2layer", choices=(*MODELS, "ensemble"))
    parser.add_argument("--grid", action="append", type=parse_axis, metavar="KEY=V1,V2",
                        help="an axis of the grid (repeatable); default: " + ", ".join(
                            f"{k}={v}" for k, v in DEFAULT_GRID.items()))
    parser.add_argument("--inner-folds", type=int, default=4,
                        help="inner folds where the dataset has no official folds")
    parser.add_argument("--out", type=Path, help="default: selection-DATASET-MODEL.json")
    args = parser.parse_args(argv)
    params = load_params()
    features = args.features or Path(f"data/features/{args.dataset}.parquet")
    if not features.is_file():
        raise SystemExit(f"{features} is missing: run `dvc repro feature-extraction@"
                         f"{args.dataset}` first, or pass --features")
    table = pd.read_parquet(features)
    held_out = adapter_for(args.dataset).validation_mask(table, params)
    train = table[~held_out].reset_index(drop=True)
    rounds = inner_rounds(train, args.inner_folds, params["seed"])
    grid = dict(args.grid) if args.grid else DEFAULT_GRID
    found = []
    for overrides in tqdm(candidates(params, grid), desc="candidates"):
        found.append({"overrides": overrides,
                      **score(args.model, with_overrides(params, overrides), train, rounds)})
    best = max(found, key=lambda c: c["accuracy"])
    run = command(best["overrides"], f"selected-{args.model}")
    summary = {"dataset": args.dataset, "model": args.model, "features": str(features),
               "held_out_clips": int(held_out.sum()), "inner_rounds": list(rounds),
               "candidates": found, "best": best["overrides"], "command": run}
    out = args.out or Path(f"selection-{args.dataset}-{args.model}.json")
    write_json(out, summary)
    for c in sorted(found, key=lambda c: -c["accuracy"]):
        spread = c["std"].get("accuracy", float("nan"))
        print(f"{100 * c['accuracy']:6.2f}% ± {100 * spread:5.2f}  {c['overrides']}")
    print(f"\n{args.dataset}, {args.model}: best by {len(rounds)}-round inner CV on "
          f"{len(train)} training clips ({int(held_out.sum())} held-out clips unused)")
    print(f"run it through the pipeline:\n  {run}\nwrote {out}")
    return summary


if __name__ == "__main__":
    main()
