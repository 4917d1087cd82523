"""Run fastai's learning-rate finder on a normalized dataset; save the plot and suggestions.

    python scripts/lr_find.py data/normalized/esc50.parquet plots/lr_find/esc50.png
    python scripts/lr_find.py data/normalized/freesound.parquet lr.png --model nn-5layer

Builds the same learner as the training stage of --model (its params.yaml settings) on the
primary evaluation round, sweeps the learning rate over a few hundred batches, and
writes the loss-vs-rate plot and, beside it as JSON, the rates fastai suggests (valley,
steep, minimum / 10). Try one with `dvc exp run -S nn.training.lr=<rate>`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from fastai.callback.schedule import minimum, steep, valley  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf import models  # noqa: E402
from soundclf.evaluation.rounds import load_rounds, recording_groups  # noqa: E402
from soundclf.io import write_json, write_with  # noqa: E402
from soundclf.params import load_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("normalized", type=Path, help="a normalize stage output (parquet)")
    parser.add_argument("out", type=Path, help="the plot (PNG); suggestions go beside it")
    parser.add_argument("--model", default="nn-2layer", choices=("nn-2layer", "nn-5layer"))
    args = parser.parse_args()
    rnd = load_rounds(args.normalized)[0]
    nn = models.get(args.model).build(load_params(), rnd.features)
    learn = nn.learner(*rnd.xy("train"), groups=recording_groups(rnd.rows("train")),
                       watch=rnd.xy("valid"))
    with learn.no_bar(), learn.no_logging():
        found = learn.lr_find(suggest_funcs=(valley, steep, minimum), show_plot=True)
    suggestions = {name: float(rate) for name, rate in found._asdict().items()}
    fig = plt.gcf()
    fig.suptitle(f"lr_find: {args.normalized.name}, layers {nn.layers}")
    write_with(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    write_json(args.out.with_suffix(".json"), {"layers": list(nn.layers), **suggestions})
    for name, rate in suggestions.items():
        print(f"{name:8s} {rate:.2e}")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
