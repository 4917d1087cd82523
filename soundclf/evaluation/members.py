"""The ensemble's members as it learns from them: their class probabilities, round by round.

``ensemble.members``' probabilities (what their stages wrote with ``--probabilities``) are
aligned clip by clip in every round; the combination (soundclf.models.ensemble) is fitted
on the training clips' out-of-fold rows and scored on the validation clips', beside each
member's accuracy there (``accuracy_<member>``), with its weights and its inner accuracy
(fitted on all inner folds but one and scored on that one, in turn: training clips only).
The primary round's combination is saved with the SHA-256 of each member's probabilities,
so that predict notices a member trained anew since.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from soundclf import trained
from soundclf.evaluation.probabilities import TrainingError, read_probabilities
from soundclf.evaluation.rounds import Round, RoundResult
from soundclf.evaluation.scores import write_results
from soundclf.models.ensemble import Combination, build, check_members
from soundclf.table import PREFIX


class MemberRound:
    """One round as the ensemble sees it: the members' probabilities of its training clips
    (out of fold) and of its validation clips, aligned clip by clip."""

    def __init__(self, name: str, parts: dict[str, pd.DataFrame], classes: list[str]):
        self.name, self.parts, self.classes = name, parts, classes

    def x(self, split: str) -> np.ndarray:
        """(clips, members, classes) probabilities of the ``train`` or ``valid`` clips."""
        return np.stack([part.loc[part["split"] == split, self.classes].to_numpy()
                         for part in self.parts.values()], axis=1)

    def rows(self, split: str) -> pd.DataFrame:
        first = next(iter(self.parts.values()))
        return first.loc[first["split"] == split, ["filename", "label", "fold", "split"]]

    def round(self) -> Round:
        """As a round of the other models (for write_results)."""
        table = pd.concat([self.rows("train"), self.rows("valid")], ignore_index=True)
        return Round(self.name, table, [])


def load_members(folder: Path, members: list[str]) -> list[MemberRound]:
    """Every round of the members' probabilities, checked to be of the same clips."""
    tables = {}
    for member in members:
        path = folder / f"{member}.parquet"
        if not path.is_file():
            raise TrainingError(
                f"no probabilities of member {member}: {path} is missing (dvc repro writes "
                f"it from train-{member}'s; the CNN's only for datasets in cnn.datasets)")
        tables[member] = read_probabilities(member, path)
    first_name, first = next(iter(tables.items()))
    classes = [c for c in first.columns if c.startswith(PREFIX)]
    rounds = list(dict.fromkeys(first["round"]))
    for member, table in tables.items():
        if [c for c in table.columns if c.startswith(PREFIX)] != classes or list(
                dict.fromkeys(table["round"])) != rounds:
            raise TrainingError(f"{folder / f'{member}.parquet'} and "
                                f"{folder / f'{first_name}.parquet'} are of different "
                                "classes or rounds: rerun their stages (dvc repro)")
    found = []
    for name in rounds:
        parts = {m: t[t["round"] == name].sort_values(["split", "filename"]).reset_index(
            drop=True) for m, t in tables.items()}
        first = parts[first_name]
        for member, part in parts.items():
            same = ["split", "filename", "label", "fold"]
            if not part[same].equals(first[same]):
                raise TrainingError(
                    f"{folder / f'{member}.parquet'} has other clips, labels or inner folds "
                    f"than {folder / f'{first_name}.parquet'} in round {name}: rerun their "
                    "stages (dvc repro)")
        if not (first["split"] == "train").any():
            raise TrainingError(f"round {name} has no out-of-fold probabilities to learn "
                                "the ensemble's weights from")
        found.append(MemberRound(name, parts, classes))
    return found


def inner_accuracy(combination: Combination, rnd: MemberRound, classes: np.ndarray
                   ) -> float | None:
    """The combination's accuracy on the training clips, each inner fold predicted by the
    combination fitted on the others (None with a single inner fold)."""
    x, rows = rnd.x("train"), rnd.rows("train")
    folds, labels = rows["fold"].to_numpy(), rows["label"].to_numpy()
    if len(np.unique(folds)) < 2:
        return None
    hits = 0
    for fold in np.unique(folds):
        held = folds == fold
        fitted = combination.fit(x[~held], labels[~held], classes)
        hits += int((fitted.predict(x[held]) == labels[held]).sum())
    return hits / len(labels)


def fit_round(params: dict, rnd: MemberRound) -> tuple[Combination, RoundResult]:
    """The combination of one round, fitted on its out-of-fold rows alone."""
    classes = np.array([c[len(PREFIX):] for c in rnd.classes])
    members = params["ensemble"]["members"]
    inner = inner_accuracy(build(params), rnd, classes)
    fitted = build(params).fit(rnd.x("train"), rnd.rows("train")["label"].to_numpy(), classes)
    valid_x, valid_y = rnd.x("valid"), rnd.rows("valid")["label"].to_numpy()
    extra = {"weights": fitted.described(),
             **({} if inner is None else {"inner_accuracy": inner})}
    for k, member in enumerate(members):
        extra[f"accuracy_{member}"] = float((classes[valid_x[:, k].argmax(axis=1)]
                                             == valid_y).mean())
    return fitted, RoundResult(rnd.round(), fitted.predict(valid_x), extra)


def train_ensemble(params: dict, members_dir: Path, model_path: Path, metrics_path: Path,
                   predictions_path: Path, scores_path: Path | None = None
                   ) -> tuple[Combination, dict]:
    """The train-ensemble stage's work: the combination of ``ensemble.members`` fitted and
    scored in every round of their probabilities in ``members_dir``, the results written
    (soundclf.evaluation.scores.write_results) and the primary round's combination saved
    to ``model_path`` with the SHA-256 of each member's probabilities. Returns that
    combination and the metrics."""
    rounds = load_members(members_dir, check_members(params))
    fitted = [fit_round(params, rnd) for rnd in rounds]
    metrics = write_results("the ensemble", [result for _, result in fitted], metrics_path,
                            predictions_path, len(rounds[0].classes), scores_path)
    combination = fitted[0][0]  # the primary round's
    trained.save(model_path, trained.Trained(
        "ensemble", combination, [str(c) for c in combination.classes_], "probabilities", {},
        members={m: trained.fingerprint(members_dir / f"{m}.parquet")
                 for m in combination.members}))
    return combination, metrics
