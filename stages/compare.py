"""Stage `compare`: one table of every dataset x model beside the originally published figures.

    python -m stages.compare PREDICTIONS_DIR COMPARE_JSON COMPARE_MD COMPARE_PNG
                             CONFUSION_DIR PER_CLASS_DIR

Every registered model (soundclf.models) with validation predictions
(``PREDICTIONS_DIR/<dataset>/<model>.csv``) gets a row; scores are recomputed from them
with the same function the model stages use, so the table and
``metrics/<dataset>/<model>.json`` agree by construction: with several evaluation rounds
(cross-validation, repeated splits) each score is the mean over the rounds, shown with its
standard deviation. For review it
also draws, from the same predictions, a normalized confusion matrix with class names per
dataset x model (CONFUSION_DIR/<dataset>/<model>.png) and the per-class accuracy of every
model per dataset (PER_CLASS_DIR/<dataset>.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf.io import write_json, write_text
from soundclf.params import ParamError, load_params
from soundclf.reporting.compare import (
    chart_rows,
    collect,
    load_predictions,
    markdown_table,
    review_images,
    scores_by_dataset,
)
from soundclf.reporting.plotting import comparison_chart


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("predictions_dir", "json", "md", "png", "confusion_dir", "per_class_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    try:
        params = load_params()
        predictions = load_predictions(args.predictions_dir, params)
    except (ParamError, FileNotFoundError) as exc:
        sys.exit(f"compare: {exc}")
    rows = collect(predictions, params)
    write_json(args.json, scores_by_dataset(rows))
    write_text(args.md, markdown_table(rows))
    comparison_chart(chart_rows(rows), args.png)
    review_images(predictions, rows, args.confusion_dir, args.per_class_dir)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
