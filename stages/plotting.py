"""Static figures (matplotlib, Agg backend) that dvc.yaml declares as image plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stages.io import write_with  # noqa: E402


def comparison_chart(rows: pd.DataFrame, out: Path) -> None:
    """Grouped bars of accuracy and balanced accuracy per dataset x model.

    ``rows`` has columns ``label`` (the tick label, may hold line breaks), ``accuracy``,
    ``balanced_accuracy`` and ``published_accuracy`` (NaN where nothing was published),
    drawn as a black tick over the accuracy bar.
    """
    x = np.arange(len(rows))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(rows) + 2), 5.0), layout="constrained")
    ax.bar(x - width / 2, rows["accuracy"] * 100, width, label="accuracy")
    ax.bar(x + width / 2, rows["balanced_accuracy"] * 100, width, label="balanced accuracy")
    published = rows["published_accuracy"] * 100
    ax.scatter(x - width / 2, published, marker="_", s=900, color="black", linewidths=2,
               label="published accuracy (original run)", zorder=3)
    for xi, acc in zip(x, rows["accuracy"] * 100, strict=True):
        ax.annotate(f"{acc:.1f}", (xi - width / 2, acc), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, rows["label"], fontsize=9)
    ax.set_ylabel("% on the validation split")
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Validation scores per dataset and model")
    fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
