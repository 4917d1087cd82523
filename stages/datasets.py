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

from stages.params import check, get


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
        raise LayoutError(f"{path}: cannot read as CSV ({exc})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise LayoutError(
            f"{path}: missing column(s) {missing}; expected {list(required)}, "
            f"found {list(table.columns)}"
        )
    return table


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

    def metadata(self, raw_dir: Path) -> pd.DataFrame:
        """One row per clip used: ``filename``, ``label`` and the columns the split needs."""
        raise NotImplementedError

    def validation_mask(self, meta: pd.DataFrame, params: dict) -> np.ndarray:
        """True for the clips of the validation split."""
        raise NotImplementedError


class ESC50(Adapter):
    """ESC-50: 2,000 five-second clips, 50 classes, 5 official folds (meta/esc50.csv)."""

    name = "esc50"
    root = "ESC-50-master"
    sources = (Source("url", "sha256", (f"{root}/meta/", f"{root}/audio/")),)
    columns = ("filename", "fold", "target", "category", "esc10", "src_file", "take")

    def audio_path(self, raw_dir: Path, filename: str) -> Path:
        return raw_dir / self.root / "audio" / filename

    def metadata(self, raw_dir: Path) -> pd.DataFrame:
        table = read_csv(raw_dir / self.root / "meta" / "esc50.csv", self.columns)
        return pd.DataFrame({
            "filename": table["filename"].astype(str),
            "label": table["category"].astype(str),
            "fold": table["fold"].astype(int),
            "src_file": table["src_file"].astype(str),
        })

    def validation_mask(self, meta: pd.DataFrame, params: dict) -> np.ndarray:
        key = "data.esc50.valid_fold"
        fold = get(params, key)
        folds = sorted(int(f) for f in meta["fold"].unique())
        check(fold in folds, key, f"must be one of the dataset's folds {folds}, got {fold!r}")
        return (meta["fold"] == fold).to_numpy()


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (ESC50(),)}


def adapter_for(name: str) -> Adapter:
    check(name in ADAPTERS, "datasets", f"entry must be one of {sorted(ADAPTERS)}; got {name!r}")
    return ADAPTERS[name]
