"""Cutting a training part into folds by class, robust to small and uneven classes.

Two places cut a round's training part by class: ``tune``'s inner folds (which also cut
the out-of-fold probabilities the ensemble learns from) and early stopping's carved set.
Real datasets have classes of one, two or three clips, and clips cut from one recording
(``src_file``) that must stay on one side.
:func:`class_folds` is the one rule for both:

- a class with fewer recordings than ``keep_below`` cannot be on both sides of every fold,
  so it is kept in the training side of every fold (never validated on there), and so is
  a class whose recordings all land in one fold's validation side;
- the other classes are split into ``n_folds`` stratified folds, recordings kept together
  (for early stopping's one carved fold in ``1 / fraction``: fewer folds when there are
  not enough recordings or clips for that many);
- either adaptation is printed in one line naming the parameter and the classes, and a
  cut that leaves nothing to validate on stops with an error naming them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from soundclf.evaluation.probabilities import TrainingError


def names(classes: Sequence) -> str:
    """Class names for a message, sorted and comma-separated."""
    return ", ".join(sorted(map(str, classes)))


def class_folds(
    labels: Sequence, groups: Sequence | None, n_folds: int, seed: int, *, param: str,
    where: str, keep_below: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, valid)`` positions of up to ``n_folds`` folds stratified by class.

    ``groups`` (e.g. ``src_file``) are kept on one side (StratifiedGroupKFold); None
    means every clip is its own recording, split by StratifiedKFold. Classes with fewer
    recordings than ``keep_below`` (default ``n_folds``) are in every fold's training
    side. With none of those and enough clips, the folds are exactly scikit-learn's.
    ``param`` and ``where`` (e.g. "round fold5") name the setting and the data in messages.
    """
    labels = np.asarray(labels).astype(str)
    group_ids = np.arange(len(labels)) if groups is None else np.asarray(groups)
    unit = "recordings" if len(np.unique(group_ids)) < len(labels) else "clips"
    keep_below = n_folds if keep_below is None else keep_below
    recordings = {c: len(np.unique(group_ids[labels == c])) for c in np.unique(labels)}
    small = [c for c, n in recordings.items() if n < keep_below]
    if small:
        print(f"{param}: class(es) with fewer than {keep_below} {unit} in {where} kept in "
              f"training only: {names(small)}")
    while True:
        folds = _split(labels, group_ids, small, n_folds, seed, param, where, unit,
                       splitter=StratifiedKFold if groups is None else StratifiedGroupKFold)
        # a class whose recordings all fell in one fold's validation side: keep it in
        # training too and cut again, so that every fold's training side has every class
        unseen = sorted({c for train, _ in folds for c in set(labels) - set(labels[train])})
        if not unseen:
            return folds
        print(f"{param}: class(es) whose recordings all fell in one fold in {where} kept in "
              f"training only: {names(unseen)}")
        small += unseen


def _split(labels: np.ndarray, group_ids: np.ndarray, small: list[str], n_folds: int,
           seed: int, param: str, where: str, unit: str, splitter: type
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of the classes not in ``small``, those in every fold's training side."""
    rest = np.flatnonzero(~np.isin(labels, small))
    if len(np.unique(group_ids[rest])) < 2:
        raise TrainingError(
            f"{param}: no folds can be cut in {where}: too few {unit} in every class "
            f"({names(np.unique(labels))}); use fewer folds or more data")
    n_groups = len(np.unique(group_ids[rest]))
    largest = int(np.unique(labels[rest], return_counts=True)[1].max())
    n = max(2, min(n_folds, n_groups, largest))  # a stratified fold needs a clip of a class
    if n < n_folds:
        print(f"{param}: {where} has too few clips for {n_folds} folds ({n_groups} {unit}, "
              f"at most {largest} clips a class); using {n} folds")
    kept = np.setdiff1d(np.arange(len(labels)), rest)
    folds = []
    with warnings.catch_warnings():  # "the least populated class has only k members":
        warnings.simplefilter("ignore", UserWarning)  # expected; the folds are checked after
        cut = splitter(n, shuffle=True, random_state=seed)
        for train, valid in cut.split(np.zeros(len(rest)), labels[rest], group_ids[rest]):
            folds.append((np.sort(np.concatenate([rest[train], kept])), rest[valid]))
    return folds
