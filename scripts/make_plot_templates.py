"""Write .dvc/plots/confusion*_sized.json: DVC's confusion templates, sized by class count.

    python scripts/make_plot_templates.py

DVC draws its confusion matrices in a fixed 300 px square, unreadable with 50 or 74 class
names. These copies of its own templates (same anchors, so `dvc plots` fills them the same
way) give every cell a fixed size and show long class names in full. Rerun after a DVC
upgrade to pick up changes to its templates.
"""

import copy
import json
from pathlib import Path

from dvc_render.vega_templates import ConfusionTemplate, NormalizedConfusionTemplate

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ("<DVC_METRIC_PLOT_WIDTH>", "<DVC_METRIC_PLOT_HEIGHT>")


def sized(content):
    c = copy.deepcopy(content)

    def walk(node):
        if isinstance(node, dict):
            for k, v in list(node.items()):
                if k in ("width", "height") and v in ANCHORS:
                    node[k] = {"step": 14}  # grows with the number of classes
                elif k in ("x", "y") and isinstance(v, dict) and v.get("type") == "nominal":
                    v["axis"] = {"labelLimit": 400}  # long class names in full
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(c)
    return c


def main() -> None:
    for cls, name in ((ConfusionTemplate, "confusion_sized"),
                      (NormalizedConfusionTemplate, "confusion_normalized_sized")):
        s = json.dumps(sized(cls.DEFAULT_CONTENT), indent=2)
        assert s.count('"step": 14') == 2 and s.count('"labelLimit": 400') == 2, name
        (ROOT / ".dvc" / "plots" / f"{name}.json").write_text(s + "\n")


if __name__ == "__main__":
    main()
