"""Score every combination of ensemble members by CV inside the training folds.

    python scripts/choose_members.py PROBABILITIES_DIR [--models M ...] [--oof-folds N]
        [--combine weighted vote]

PROBABILITIES_DIR is a dataset's folder of the model stages' probabilities
(``data/probabilities/<dataset>``, every model trained). For each combination of two or
more of ``--models`` (default: every file there) and each ``--combine``, in every round the
combination is fitted on all inner folds of the out-of-fold probabilities but one and
scored on that one, in turn (soundclf.evaluation.members.inner_accuracy): training clips only,
what the default members are chosen by. ``--oof-folds N`` keeps the first N inner folds
only, as ``oof.folds: N`` would have made them. The validation accuracy is printed beside
it, for the record; it takes no part in the ranking.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf.evaluation.members import MemberRound, inner_accuracy, load_members  # noqa: E402
from soundclf.models.ensemble import Combination  # noqa: E402
from soundclf.table import PREFIX  # noqa: E402


def first_folds(rnd: MemberRound, n: int | None) -> MemberRound:
    """The round with the out-of-fold rows of its first ``n`` inner folds only."""
    if n is None:
        return rnd
    first = next(iter(rnd.parts.values()))
    folds = sorted(first.loc[first["split"] == "train", "fold"].unique(),
                   key=lambda f: int(f.removeprefix("fold")) if f[4:].isdigit() else f)[:n]
    keep = (first["split"] == "valid") | first["fold"].isin(folds)
    return MemberRound(rnd.name, {m: p[keep].reset_index(drop=True)
                                  for m, p in rnd.parts.items()}, rnd.classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--models", nargs="+", help="the candidates (default: every file)")
    parser.add_argument("--oof-folds", type=int, help="the first N inner folds only")
    parser.add_argument("--combine", nargs="+", default=["weighted", "vote"])
    args = parser.parse_args()
    if args.oof_folds is not None and args.oof_folds < 2:
        parser.error("--oof-folds must be 2 or more: the inner accuracy fits on all inner "
                     "folds but one and scores that one")
    names = args.models or sorted(p.stem for p in args.folder.glob("*.parquet"))
    rounds = [first_folds(r, args.oof_folds) for r in load_members(args.folder, names)]
    classes = np.array([c[len(PREFIX):] for c in rounds[0].classes])
    rows = []
    for size in range(1, len(names) + 1):
        for members in itertools.combinations(names, size):
            for combine in args.combine if size > 1 else ["weighted"]:
                inner, valid, weights = [], [], []
                for rnd in rounds:
                    part = MemberRound(rnd.name, {m: rnd.parts[m] for m in members},
                                       rnd.classes)
                    inner.append(inner_accuracy(Combination(list(members), combine), part,
                                                classes))
                    fitted = Combination(list(members), combine).fit(
                        part.x("train"), part.rows("train")["label"].to_numpy(), classes)
                    valid.append(float((fitted.predict(part.x("valid"))
                                        == part.rows("valid")["label"].to_numpy()).mean()))
                    weights.append(fitted.weights_)
                label = " + ".join(members) if size > 1 else f"{members[0]} (alone)"
                rows.append((np.mean(inner), label, combine if size > 1 else "-",
                             inner, valid, np.mean(weights, axis=0)))
    print(f"{len(rounds)} round(s); inner accuracy: CV over the inner folds of the training "
          "clips (the ranking); validation: each round's validation clips (not used)")
    print("| members | combine | inner accuracy (mean; per round) | validation accuracy "
          "(mean; per round) | mean weights |")
    print("|---|---|---|---|---|")
    for mean, label, combine, inner, valid, weights in sorted(rows, key=lambda r: -r[0]):
        print(f"| {label} | {combine} | {100 * mean:.2f}; "
              + ", ".join(f"{100 * a:.1f}" for a in inner)
              + f" | {100 * np.mean(valid):.2f}; " + ", ".join(f"{100 * a:.1f}" for a in valid)
              + " | " + ", ".join(f"{w:.2f}" for w in weights) + " |")


if __name__ == "__main__":
    main()
