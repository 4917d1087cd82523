"""Queue a grid of experiments with `dvc exp run --queue`, and optionally run the queue.

    python scripts/sweep.py                      # queue the default grid (see GRID)
    python scripts/sweep.py --axes layers lr     # only these axes; others stay as in params
    python scripts/sweep.py --dry-run            # print the commands, queue nothing
    python scripts/sweep.py --start -j 2         # queue, then `dvc queue start -j 2`

The grid follows the original write-up's recommendations: architectures [400, 200],
[300, 150, 75] and [500] for the 2-layer stage's `nn.layers`, learning rates 1e-4, 5e-4
and 1e-3, the four scalers and batch sizes 32, 64 and 128. Every combination of the chosen
axes is one experiment (all four axes: 108). Read the results with

    dvc exp show --only-changed --sort-by metrics/esc50/nn-2layer.json:accuracy

and promote the best with ``dvc exp branch <experiment> <branch>``.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf.params import format_value  # noqa: E402

GRID = {
    "layers": ("nn.layers", [[400, 200], [300, 150, 75], [500]]),
    "lr": ("nn.training.lr", [0.0001, 0.0005, 0.001]),
    "scaler": ("normalize.scaler", ["none", "standard", "minmax", "robust"]),
    "batch_size": ("nn.training.batch_size", [32, 64, 128]),
}


def commands(axes: list[str]) -> list[list[str]]:
    """One `dvc exp run --queue` command per combination of the chosen axes' values."""
    keys = [GRID[a][0] for a in axes]
    runs = []
    for values in itertools.product(*(GRID[a][1] for a in axes)):
        settings = [f"{k}={format_value(v)}" for k, v in zip(keys, values, strict=True)]
        runs.append(["dvc", "exp", "run", "--queue",
                     *itertools.chain.from_iterable(("-S", s) for s in settings)])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axes", nargs="+", choices=list(GRID), default=list(GRID),
                        help="which parameters to vary (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not queue")
    parser.add_argument("--start", action="store_true", help="run the queue afterwards")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="queue workers")
    args = parser.parse_args()
    runs = commands(args.axes)
    for cmd in runs:
        print(" ".join(cmd))
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    print(f"{len(runs)} experiment(s) {'listed' if args.dry_run else 'queued'}")
    if args.start and not args.dry_run:
        subprocess.run(["dvc", "queue", "start", "-j", str(args.jobs)], check=True)
        print("running in the background: `dvc queue status`, `dvc queue logs <name>`")


if __name__ == "__main__":
    main()
