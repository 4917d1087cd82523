"""Dataset adapters: where each dataset comes from, how its metadata reads, how it splits.

An adapter turns a dataset's own layout into one table with a row per clip:
``filename``, ``label`` (the class name) and whatever grouping columns its split needs
(``fold`` and ``src_file`` for ESC-50). Every stage after ``download`` works on that
table only, so a new dataset is a new adapter, not new stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from soundclf.params import ParamError, check, get


class LayoutError(ValueError):
    """A downloaded dataset whose files or metadata are not what the adapter expects."""


@dataclass(frozen=True)
class Source:
    """One archive of a dataset: the params keys naming it and the members to keep."""

    url_key: str
    sha256_key: str
    members: tuple[str, ...]


def read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise LayoutError(f"metadata file {path} is missing")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LayoutError(
            f"{path}: cannot read as CSV ({exc}); expected columns {list(required)}"
        ) from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise LayoutError(
            f"{path}: missing column(s) {missing}; expected {list(required)}, "
            f"found {list(table.columns)}"
        )
    return table


def summary(listed: pd.DataFrame) -> dict[str, int]:
    """Clip and class counts of an adapter's ``listed`` table, for the dataset metrics."""
    used = listed["label"].notna()
    return {"clips_listed": len(listed), "clips_used": int(used.sum()),
            "clips_excluded": int((~used).sum()),
            "classes": int(listed.loc[used, "label"].nunique())}


def check_clips_present(raw_dir: Path, adapter: Adapter, meta: pd.DataFrame) -> None:
    """Fail, naming the missing files, unless every clip listed in the metadata exists."""
    missing = [f for f in meta["filename"] if not adapter.audio_path(raw_dir, f).is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise LayoutError(
            f"{raw_dir}: {len(missing)} of {len(meta)} clips listed in the metadata are "
            f"missing from {adapter.audio_path(raw_dir, '')}: {shown}"
        )


class Adapter:
    """What every dataset provides; see :class:`ESC50` for a complete example."""

    name: str
    sources: tuple[Source, ...]

    def audio_path(self, raw_dir: Path, filename: str) -> Path:
        raise NotImplementedError

    def listed(self, raw_dir: Path) -> pd.DataFrame:
        """Every clip the metadata lists, with ``filename``; the ones used have a ``label``."""
        raise NotImplementedError

    def prune(self, raw_dir: Path, listed: pd.DataFrame) -> None:
        """Delete what the dataset does not use from a fresh download (default: nothing)."""

    def metadata(self, raw_dir: Path) -> pd.DataFrame:
        """One row per clip used: ``filename``, ``label`` and the columns the split needs."""
        listed = self.listed(raw_dir)
        return listed[listed["label"].notna()].reset_index(drop=True)

    def rounds(self, meta: pd.DataFrame, params: dict) -> dict[str, np.ndarray]:
        """The evaluation rounds: name -> True for the clips validated on in that round.

        The first round is the primary one (the original split, whose model is kept);
        with cross-validation or repeated splits, every model is also scored on the others.
        """
        raise NotImplementedError

    def validation_mask(self, meta: pd.DataFrame, params: dict) -> np.ndarray:
        """True for the clips of the primary validation split."""
        return next(iter(self.rounds(meta, params).values()))


def fold_spread(meta: pd.DataFrame, by: list[str]) -> list[str]:
    """Each ``by`` group whose clips are in more than one fold, e.g. ``"131943 (folds 2, 3)"``
    or ``"131943 hen (folds 2, 3)"``."""
    folds = meta.groupby(by)["fold"].unique()
    return [f"{' '.join(map(str, key if isinstance(key, tuple) else (key,)))} (folds "
            f"{', '.join(str(f) for f in sorted(found))})"
            for key, found in folds.items() if len(found) > 1]


class ESC50(Adapter):
    """ESC-50: 2,000 five-second clips, 50 classes, 5 official folds (meta/esc50.csv)."""

    name = "esc50"
    root = "ESC-50-master"
    sources = (Source("url", "sha256", (f"{root}/meta/", f"{root}/audio/")),)
    columns = ("filename", "fold", "target", "category", "esc10", "src_file", "take")

    def audio_path(self, raw_dir: Path, filename: str) -> Path:
        return raw_dir / self.root / "audio" / filename

    def listed(self, raw_dir: Path) -> pd.DataFrame:
        table = read_csv(raw_dir / self.root / "meta" / "esc50.csv", self.columns)
        return pd.DataFrame({
            "filename": table["filename"].astype(str),
            "label": self.labels(table),
            "fold": table["fold"].astype(int),
            "src_file": table["src_file"].astype(str),
        })

    def labels(self, table: pd.DataFrame) -> pd.Series:
        """The class of every row of esc50.csv (NaN for a clip not used)."""
        return table["category"].astype(str)

    def rounds(self, meta: pd.DataFrame, params: dict) -> dict[str, np.ndarray]:
        """``valid_fold`` alone or, with ``cv``, it and then every other official fold.

        Folds must never split the clips that one recording (``src_file``) gives to one
        class: a metadata file where they do is refused, naming the recordings, as its
        scores would leak. A recording that gives clips to two classes in two folds is
        taken as it is: the official metadata has four (e.g. 131943: clock_tick in fold 2,
        clock_alarm in fold 3), and the official folds are the protocol behind every
        published figure. One line says which were seen.
        """
        key = f"data.{self.name}.valid_fold"
        fold = get(params, key)  # an integer >= 1 (params.SCHEMA); which folds exist is data
        folds = sorted(int(f) for f in meta["fold"].unique())
        check(fold in folds, key, f"must be one of the dataset's folds {folds}, got {fold!r}")
        source = f"{self.root}/meta/esc50.csv"
        leaking = fold_spread(meta, ["src_file", "label"])
        if leaking:
            raise LayoutError(
                f"{len(leaking)} recording(s) have clips of one class in several folds, so "
                f"the folds would leak: {', '.join(leaking[:5])}"
                f"{' ...' if len(leaking) > 5 else ''} (check the fold and src_file columns "
                f"of {source})")
        if across := fold_spread(meta, ["src_file"]):
            print(f"{self.name}: {len(across)} recording(s) give clips to different classes in "
                  f"different folds, taken as {source} gives them: {', '.join(across[:5])}"
                  f"{' ...' if len(across) > 5 else ''}")
        cv = get(params, f"data.{self.name}.cv")
        chosen = [fold, *(f for f in folds if f != fold)] if cv else [fold]
        return {f"fold{f}": (meta["fold"] == f).to_numpy() for f in chosen}


class ESC10(ESC50):
    """ESC-10: the 400 clips of ESC-50's 10-class subset (``esc10`` column), same folds.

    It reads the ESC-50 archive (by default the same URL, so the download stage's cache
    fetches it once for both); the other 1,600 clips are listed, not used, and their audio
    is not kept in its raw folder.
    """

    name = "esc10"

    def prune(self, raw_dir: Path, listed: pd.DataFrame) -> None:
        for filename in listed.loc[listed["label"].isna(), "filename"]:
            self.audio_path(raw_dir, filename).unlink(missing_ok=True)

    def labels(self, table: pd.DataFrame) -> pd.Series:
        in_esc10 = table["esc10"].astype(str).str.strip().str.lower() == "true"
        return super().labels(table).where(in_esc10)


class FreeSound(Adapter):
    """FSDKaggle2019 curated train set: 4,970 clips of 0.3-30 s; its single-label clips.

    Zenodo record 3612637 ships the audio and the metadata as two archives. A clip with
    several comma-separated labels is listed but not used (``label`` is NaN).
    """

    name = "freesound"
    audio_root = "FSDKaggle2019.audio_train_curated"
    meta_root = "FSDKaggle2019.meta"
    # Zenodo's post-competition file, then the Kaggle-era one (same two columns)
    meta_files = ("train_curated_post_competition.csv", "train_curated.csv")
    sources = (
        Source("audio_url", "audio_sha256", (f"{audio_root}/",)),
        Source("meta_url", "meta_sha256", (f"{meta_root}/",)),
    )

    def audio_path(self, raw_dir: Path, filename: str) -> Path:
        return raw_dir / self.audio_root / filename

    def listed(self, raw_dir: Path) -> pd.DataFrame:
        folder = raw_dir / self.meta_root
        found = [folder / f for f in self.meta_files if (folder / f).is_file()]
        if not found:
            raise LayoutError(f"{folder}: none of {', '.join(self.meta_files)} found")
        table = read_csv(found[0], ("fname", "labels"))
        labels = table["labels"].fillna("").astype(str).str.strip()
        single = (labels != "") & ~labels.str.contains(",")
        return pd.DataFrame({"filename": table["fname"].astype(str),
                             "label": labels.where(single)})

    def rounds(self, meta: pd.DataFrame, params: dict) -> dict[str, np.ndarray]:
        """Stratified splits (``valid_size``) as in the original analysis, one per seed.

        The first uses ``split_seed`` (the original split); with ``repeats`` > 1 the next
        ones use ``split_seed + 1``, ``split_seed + 2``, ... Rule for classes too small to
        stratify: a class with a single clip cannot be in both splits, so its clip goes to
        training (and is reported); every other class is split with
        ``train_test_split(..., stratify=label)``. When the validation size is smaller
        than the number of classes (many tiny classes), the smallest classes whose share
        of it is less than one clip are kept in training only, one by one, until every
        class left can have a validation clip (reported, naming them).
        """
        size_key, seed_key = "data.freesound.valid_size", "data.freesound.split_seed"
        valid_size, seed = get(params, size_key), get(params, seed_key)
        counts = meta["label"].value_counts()
        singles = counts.index[counts < 2]
        if len(singles):
            print(f"freesound: {len(singles)} class(es) with a single clip kept in training "
                  f"only (cannot be stratified): {', '.join(sorted(singles))}")
        stratified = counts[counts >= 2].sort_values(kind="stable")
        small = []  # a stratified split needs a validation clip of every class it splits
        while (len(stratified) > 2 and stratified.iloc[0] * valid_size < 1
               and np.ceil(valid_size * stratified.sum()) < len(stratified)):
            small.append(stratified.index[0])
            stratified = stratified.iloc[1:]
        if small:
            print(f"freesound: {size_key} {valid_size} gives fewer validation clips than "
                  f"classes; {len(small)} smallest class(es) kept in training only: "
                  f"{', '.join(sorted(small))}")
        rows = np.flatnonzero(meta["label"].isin(stratified.index))
        labels = meta["label"].to_numpy()[rows]
        found = {}
        for split_seed in range(seed, seed + get(params, "data.freesound.repeats")):
            try:
                _, valid_rows = train_test_split(rows, test_size=valid_size,
                                                 random_state=split_seed, stratify=labels)
            except ValueError as exc:
                raise ParamError(
                    f"params.yaml: '{size_key}' = {valid_size} cannot give a stratified split "
                    f"of {len(rows)} clips in {len(set(labels))} classes ({exc})"
                ) from None
            found[f"seed{split_seed}"] = np.isin(np.arange(len(meta)), valid_rows)
        return found


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (ESC50(), ESC10(), FreeSound())}


def adapter_for(name: str, params: dict | None = None) -> Adapter:
    """The adapter of dataset ``name``: a built-in one, or for a ``data.<name>.kind:
    folder`` section of ``params``, the folder kind's (soundclf.data.folder)."""
    if name in ADAPTERS:
        return ADAPTERS[name]
    section = (params or {}).get("data", {}).get(name)
    if isinstance(section, dict) and section.get("kind") == "folder":
        from soundclf.data.folder import Folder  # it builds on this module

        return Folder(name)
    raise ParamError(f"params.yaml: 'datasets' entry must be one of {sorted(ADAPTERS)} or a "
                     f"dataset with a data.{name} section of kind: folder; got {name!r}")
