"""Static figures (matplotlib, Agg backend) that dvc.yaml declares as image plots."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from soundclf.io import write_with  # noqa: E402


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
    # a group is 1.5 inches wide: longer lines (an ensemble's members) wrap to fit
    labels = ["\n".join(textwrap.fill(line, 22) for line in label.split("\n"))
              for label in rows["label"]]
    ax.set_xticks(x, labels, fontsize=9)
    ax.set_ylabel("% on the validation split")
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Validation scores per dataset and model")
    fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def confusion_image(actual, predicted, title: str, out: Path) -> None:
    """Row-normalized confusion matrix with every class name, readable for 74 classes.

    The figure grows with the number of classes; counts are printed in the cells only
    when there are few enough classes for them to fit.
    """
    classes = sorted(set(actual) | set(predicted))
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)))
    for a, p in zip(actual, predicted, strict=True):
        counts[index[a], index[p]] += 1
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    font = 9 if n <= 20 else 7 if n <= 50 else 6
    side = max(5.0, 0.17 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=font)
    ax.set_yticks(range(n), classes, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=11)
    if n <= 20:
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=font,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, shrink=0.6, label="fraction of the actual class")
    write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def per_class_chart(table: pd.DataFrame, title: str, out: Path) -> None:
    """A classes x models grid of per-class accuracy, each cell's percent printed in it.

    ``table`` has one row per class (the index, class names) and one column per model; 50
    classes and six models fit one screen (about 800 x 1,000 pixels).
    """
    n, models = len(table), list(table.columns)
    values = table.to_numpy(dtype=float) * 100
    font = 8 if n <= 20 else 7 if n <= 50 else 6
    fig, ax = plt.subplots(figsize=(2.2 + 0.95 * len(models), 1.3 + 0.175 * n),
                           layout="constrained")
    image = ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i, j in np.ndindex(values.shape):
        if np.isfinite(values[i, j]):
            ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=font,
                    color="white" if values[i, j] < 15 or values[i, j] > 85 else "black")
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(n), table.index, fontsize=font)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.5, pad=0.02,
                 label="% of the class's validation clips classified correctly")
    write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
