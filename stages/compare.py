"""Stage `compare`: every dataset x model's scores in one table, beside the published figures.

    python -m stages.compare PREDICTIONS_DIR COMPARE_JSON COMPARE_MD COMPARE_PNG
                             CONFUSION_DIR PER_CLASS_DIR

Reads every model's validation predictions (``PREDICTIONS_DIR/<dataset>/<model>.csv``) and
writes the table as JSON and Markdown, a comparison chart, a confusion image per dataset x
model and a per-class accuracy chart per dataset (soundclf.reporting).
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
