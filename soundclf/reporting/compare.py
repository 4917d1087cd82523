"""Every dataset x model's scores in one table, beside the originally published figures.

Every registered model with validation predictions gets a row; the scores are recomputed
from the predictions with the function the model stages use (soundclf.evaluation.scores),
so the table and ``metrics/<dataset>/<model>.json`` agree by construction: with several
evaluation rounds each score is the mean over the rounds, with its standard deviation.
The review images are drawn from the same predictions (soundclf.reporting.plotting).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from soundclf import models
from soundclf.evaluation.scores import Scores
from soundclf.params import METRICS
from soundclf.reporting.plotting import confusion_image, per_class_chart

# The original write-up's figures (validation split: ESC-50 fold 5, FreeSound 20% stratified;
# its ESC-50 NNs in fact a random 80/20 split, fastai having ignored the script's splits=),
# all with unscaled features (normalize.scaler: none); None where it published none.
PUBLISHED = {
    ("esc50", "svc"): (0.3500, None, None),
    ("esc50", "nn-2layer"): (0.5275, 0.5281, 0.517),
    ("esc50", "nn-5layer"): (0.4625, 0.4790, 0.452),
    ("freesound", "svc"): (0.5660, None, None),
    ("freesound", "nn-2layer"): (0.0106, 0.0137, 0.0002),
}


PUBLISHED_ARCH = {"nn-2layer": "[200, 100]", "nn-5layer": "[400, 300, 200, 100, 50]"}


DATASET_NAMES = {"esc50": "ESC-50", "esc10": "ESC-10", "freesound": "FreeSound"}


def load_predictions(pred_dir: Path, params: dict) -> dict[tuple[str, str], pd.DataFrame]:
    """The validation predictions of every dataset x model, keyed by (dataset, model).

    Models in registry order, those whose stage runs for the dataset (a file left by a
    model switched off since, e.g. the CNN's after ``cnn.datasets`` changed, is not read);
    a dataset with no predictions, or a file of a model the registry does not know, is an
    error.
    """
    registry, found = models.every(), {}
    for dataset in params["datasets"]:
        files = {p.stem: p for p in sorted((pred_dir / dataset).glob("*.csv"))}
        if unknown := sorted(files.keys() - registry.keys()):
            raise FileNotFoundError(f"{pred_dir / dataset}: predictions of unknown model(s) "
                                    f"{', '.join(unknown)} (known: {', '.join(registry)})")
        if not files:
            raise FileNotFoundError(f"{pred_dir / dataset} has no predictions: run the train "
                                    "stages first")
        for model, entry in registry.items():
            if model in files and entry.runs_on(params, dataset):
                found[dataset, model] = pd.read_csv(files[model], dtype=str,
                                                    keep_default_na=False)
    return found


def collect(predictions: dict[tuple[str, str], pd.DataFrame], params: dict) -> pd.DataFrame:
    """One row per dataset x model: architecture, scores, and the published figures."""
    rows, registry = [], models.every()
    for (dataset, model), preds in predictions.items():
        entry = registry[model]
        published = PUBLISHED.get((dataset, model), (None, None, None))
        scores = Scores.of(preds)
        rows.append({
            "dataset": dataset, "model": model, "display": entry.display,
            "architecture": entry.architecture(params) if entry.architecture else "-",
            "rounds": len(scores.rounds),
            **scores.mean, **{f"{m}_std": v for m, v in scores.std.items()},
            "published_accuracy": published[0], "published_balanced_accuracy": published[1],
            "published_f1_weighted": published[2],
        })
    return pd.DataFrame(rows)


def _pct(value, std=None) -> str:
    if value is None or pd.isna(value):
        return "-"
    spread = "" if std is None or pd.isna(std) else f" ± {100 * std:.2f}"
    return f"{100 * value:.2f}%{spread}"


def _f1(value) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.4f}"  # published 0.0002 stays visible


def cross_dataset_summary(rows: pd.DataFrame) -> str:
    """LinearSVC against the best NN of each dataset, as in the original write-up."""
    lines = ["## LinearSVC vs best NN", "",
             "| Dataset | LinearSVC | Best NN | Difference | Winner "
             "| Published LinearSVC / best NN |", "|---|---|---|---|---|---|"]
    for dataset, group in rows.groupby("dataset", sort=False):
        nns = group[group["display"] == "NN"]
        if "svc" not in set(group["model"]) or nns.empty:  # a model left out of dvc.yaml
            continue
        svc = group[group["model"] == "svc"].iloc[0]
        best = nns.loc[nns["accuracy"].idxmax()]
        diff = best["accuracy"] - svc["accuracy"]
        winner = "NN" if diff > 0 else ("LinearSVC" if diff < 0 else "tie")
        published = f"{_pct(svc['published_accuracy'])} / {_pct(nns['published_accuracy'].max())}"
        lines.append(
            f"| {DATASET_NAMES.get(dataset, dataset)} | {_pct(svc['accuracy'])} "
            f"| {_pct(best['accuracy'])} ({best['architecture']}) | {100 * diff:+.2f} points "
            f"| {winner} | {published} |"
        )
    return "\n".join(lines) + "\n"


def markdown_table(rows: pd.DataFrame) -> str:
    lines = [
        "| Dataset | Model | Architecture | Rounds | Accuracy | Balanced accuracy "
        "| F1 (weighted) | F1 (macro) | Published accuracy | Published balanced acc. "
        "| Published F1 (weighted) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        lines.append(
            f"| {DATASET_NAMES.get(r.dataset, r.dataset)} | {r.display} | {r.architecture} "
            f"| {r.rounds} | {_pct(r.accuracy, getattr(r, 'accuracy_std', None))} "
            f"| {_pct(r.balanced_accuracy, getattr(r, 'balanced_accuracy_std', None))} "
            f"| {_f1(r.f1_weighted)} "
            f"| {_f1(r.f1_macro)} | {_pct(r.published_accuracy)} "
            f"| {_pct(r.published_balanced_accuracy)} | {_f1(r.published_f1_weighted)} |"
        )
    notes = ", ".join(f"{m}: {a}" for m, a in PUBLISHED_ARCH.items())
    return (
        "# Validation results\n\n" + "\n".join(lines) + "\n\n"
        + cross_dataset_summary(rows) + "\n"
        "Rounds: the evaluation rounds scored (1: the validation split alone; 5: ESC-50's "
        "official folds with `data.esc50.cv` or `data.esc10.cv`; n: "
        "`data.freesound.repeats`); with several, "
        "scores are means over the rounds, ± their standard deviation. "
        "Published figures are the original write-up's, from unscaled features "
        f"(`normalize.scaler: none`) and the original architectures ({notes}); "
        "`-` where it reported none. Its ESC-50 NN figures come from a random 80/20 split "
        "of all clips, recordings on both sides (fastai ignored the script's `splits=`), "
        "not from fold 5; its FreeSound NN figure is the failed run "
        "(an integer label trained as a one-output regression).\n"
    )


def scores_by_dataset(rows: pd.DataFrame) -> dict:
    """compare.json: every dataset's models' scores (and their ``std`` over several rounds)."""
    summary: dict = {}
    for r in rows.itertuples():
        entry = {m: getattr(r, m) for m in METRICS}
        if r.rounds > 1:
            entry["std"] = {m: getattr(r, f"{m}_std") for m in METRICS}
        summary.setdefault(r.dataset, {})[r.model] = entry
    return summary


def chart_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as the comparison chart reads them: a ``label`` of dataset, model and
    architecture per bar."""
    return rows.assign(
        label=[f"{DATASET_NAMES.get(r.dataset, r.dataset)}\n{r.display}"
               + (f"\n{r.architecture}" if r.architecture != "-" else "")
               for r in rows.itertuples()],
        published_accuracy=rows["published_accuracy"].astype(float),
    )


def review_images(predictions: dict[tuple[str, str], pd.DataFrame], rows: pd.DataFrame,
                  confusion_dir: Path, per_class_dir: Path) -> None:
    """A normalized confusion matrix per dataset x model and per-class accuracy per dataset."""
    labels = {(r.dataset, r.model): f"{r.display} {r.architecture}".replace(" -", "")
              for r in rows.itertuples()}
    per_class: dict[str, dict[str, pd.Series]] = {}
    for (dataset, model), preds in predictions.items():
        name = f"{DATASET_NAMES.get(dataset, dataset)}, {labels[dataset, model]}"
        confusion_image(preds["actual"], preds["predicted"],
                        f"{name}: validation confusion (row-normalized)",
                        confusion_dir / dataset / f"{model}.png")
        correct = (preds["actual"] == preds["predicted"]).groupby(preds["actual"]).mean()
        per_class.setdefault(dataset, {})[model] = correct  # a short column name
    for dataset, by_model in per_class.items():
        per_class_chart(pd.DataFrame(by_model).sort_index(),
                        f"{DATASET_NAMES.get(dataset, dataset)}: per-class validation accuracy",
                        per_class_dir / f"{dataset}.png")
