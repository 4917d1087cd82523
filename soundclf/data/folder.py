"""The ``folder`` dataset kind: any folder (or archive of one) of labelled recordings.

Laid out as Hugging Face ``datasets``' AudioFolder and torchvision's ImageFolder read it:

- label folders: ``root/<label>/<any/sub/folders>/<clip>``, the label the first-level
  folder's name (classes sorted by name);
- or a metadata table at the root, ``metadata.csv`` or ``metadata.jsonl``: ``file_name``
  (relative to the root), ``label``, optionally ``fold`` (predefined folds, integers from
  1) and ``group`` (clips that must stay on one side of a split: cuts of one recording,
  one site, one day, one speaker). Files on disk that it does not list are reported, not
  used.

A local folder is read in place: the ``download`` stage writes the clip table
(``clips.csv``), each file's size and modification time (``files.csv``) and where the
audio is (``source.json``) to ``data/raw/<name>``, so a change to a file reruns what
reads it. The ``index`` stage (:mod:`soundclf.data.index`), which runs on every ``dvc
repro``, is what makes DVC notice such a change. An archive (``.zip``, ``.tar.gz``,
``.tgz``, ``.tar``), local or downloaded, is extracted into ``data/raw/<name>/files``.

Splits: the metadata's folds when it has them (``valid_fold``, ``cv`` as for ESC-50, and
ESC-50's leak check: a ``group``'s clips of one class never in two folds); otherwise
``folds`` stratified folds, seeded by ``split_seed``, kept apart by ``group`` when given
(StratifiedGroupKFold). Without groups, clips cut from one recording may land on both
sides: every run says so.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import soundfile as sf
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from soundclf.data.archive import DownloadError, extract, fetch, sha256sum
from soundclf.data.datasets import Adapter, LayoutError, fold_spread
from soundclf.params import check, get

KIND = "folder"
# what libsndfile reads (soundfile.available_formats()), by extension
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".w64", ".caf", ".rf64"})
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar")
CLIPS, FILES, SOURCE, UNUSED = "clips.csv", "files.csv", "source.json", "unused.csv"
EXTRACTED = "files"  # an archive's contents, inside data/raw/<name>
SHOWN = 10  # files named in one message


def _shown(items: list, n: int = SHOWN) -> str:
    return ", ".join(map(str, items[:n])) + (f" ... ({len(items)} in all)" if len(items) > n
                                             else "")


def _at(rows: np.ndarray, values: pd.Series, mask: pd.Series) -> str:
    """``"12 (rain/a.wav), 14 (...)"``: the lines of the rows in ``mask``, with their value."""
    return _shown([f"{r} ({v})" for r, v in zip(rows[mask], values[mask], strict=True)])


def is_audio(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in AUDIO_EXTENSIONS


def walk(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file under ``root`` (POSIX paths relative to it, sorted), and what is refused.

    Hidden files and folders (``.DS_Store``, ``.git``) are skipped. A link is followed only
    when it points inside ``root``; one that points outside it (or nowhere) is refused with
    the reason, as is a linked folder (its files are read where they are, not twice).
    """
    top = root.resolve()
    files, refused = [], []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():
                dirs.remove(d)
                rel = (base / d).relative_to(root).as_posix()
                refused.append((rel, f"a link to a folder ({os.readlink(base / d)}): not "
                                     "followed; move or copy its files into the folder"))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not target.is_file():
                    refused.append((rel, f"a broken link (to {os.readlink(path)})"))
                    continue
                if not target.is_relative_to(top):
                    refused.append((rel, f"a link to {target}, outside {root}: not followed; "
                                         "copy the file into the folder instead"))
                    continue
            files.append(rel)
    return sorted(files), refused


def _read_metadata(path: Path) -> pd.DataFrame:
    """The metadata table, every value as text (labels such as ``NA`` or ``1.0`` intact)."""
    try:
        if path.suffix == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            table = pd.read_json(path, lines=True, dtype=False)
            table = table.astype(object).where(table.notna(), "").astype(str)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LayoutError(f"{path}: cannot be read ({exc}); expected columns file_name, "
                          "label and optionally fold, group") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("file_name", "label") if c not in table.columns]
    if missing:
        raise LayoutError(f"{path}: missing column(s) {missing}; it needs file_name (the "
                          f"file's path relative to {path.parent}) and label, found "
                          f"{list(table.columns)}")
    return table


def _metadata_clips(root: Path, meta_file: Path, audio: list[str], others: list[str]
                    ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    table = _read_metadata(meta_file)
    where = meta_file.name
    rows = table.index.to_numpy() + 2  # the CSV line (header is line 1); jsonl: line + 1
    if meta_file.suffix == ".jsonl":
        rows = rows - 1
    names = table["file_name"].str.strip().map(
        lambda f: PurePosixPath(f.replace("\\", "/")).as_posix() if f else "")
    labels = table["label"].str.strip()
    for mask, what in ((names == "", "no file_name"), (labels == "", "no label")):
        if mask.any():
            raise LayoutError(f"{where}: row(s) with {what}, line(s) {_shown(list(rows[mask]))}: "
                              f"fill them in or delete them")
    outside = names.map(lambda f: f.startswith("/") or ".." in PurePosixPath(f).parts)
    if outside.any():
        raise LayoutError(f"{where}: file_name must be a path inside {root}; line(s) "
                          f"{_at(rows, names, outside)}")
    twice = names.duplicated(keep=False)
    if twice.any():
        listed = [f"{n} (lines {', '.join(map(str, rows[names == n]))})"
                  for n in dict.fromkeys(names[twice])]
        raise LayoutError(f"{where}: {twice.sum()} rows list a file already listed: "
                          f"{_shown(listed)}; keep one row per file")
    on_disk = set(audio) | set(others)
    missing = ~names.isin(on_disk)
    if missing.any():
        listed = [f"{n} (line {r})" for r, n in zip(rows[missing], names[missing], strict=True)]
        raise LayoutError(f"{where}: {missing.sum()} of {len(names)} listed file(s) are not "
                          f"in {root}: {_shown(listed)}; add the files or delete their rows")
    clips = pd.DataFrame({"filename": names.to_numpy(), "label": labels.to_numpy()})
    if "fold" in table:
        folds = pd.to_numeric(table["fold"].str.strip(), errors="coerce")
        bad = folds.isna() | (folds < 1) | (folds % 1 != 0)
        if bad.any():
            raise LayoutError(f"{where}: fold must be an integer from 1, line(s) "
                              f"{_at(rows, table['fold'].map(repr), bad)}")
        clips["fold"] = folds.astype(int).to_numpy()
    if "group" in table:
        groups = table["group"].str.strip()
        if (groups == "").any():
            raise LayoutError(f"{where}: row(s) with an empty group, line(s) "
                              f"{_shown(list(rows[groups == '']))}: give every clip a group")
        clips["group"] = groups.to_numpy()
    listed = set(names)
    unused = [(f, f"not listed in {where}") for f in audio if f not in listed]
    return clips, unused


def _folder_clips(root: Path, audio: list[str], others: list[str]
                  ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    top = [f for f in audio if "/" not in f]
    unused = [(f, "at the top level, in no label folder") for f in top]
    nested = [f for f in audio if "/" in f]
    labels = [f.split("/", 1)[0] for f in nested]
    folders = sorted({p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                      and not p.name.startswith(".")})
    empty = [d for d in folders if d not in set(labels)]
    if empty and nested:
        raise LayoutError(f"{root}: label folder(s) with no audio file: {_shown(empty)} "
                          f"(audio: {', '.join(sorted(AUDIO_EXTENSIONS))}); add recordings or "
                          "remove the folder")
    clips = pd.DataFrame({"filename": nested, "label": labels})
    return clips.sort_values(["label", "filename"], kind="stable").reset_index(drop=True), unused


def _identical_audio(root: Path, clips: pd.DataFrame) -> None:
    """Refuse byte-identical files under two labels (their scores would leak); only files
    of equal size are hashed."""
    sizes = clips["filename"].map(lambda f: (root / f).stat().st_size)
    same_size = sizes.duplicated(keep=False)
    if not same_size.any():
        return
    digest = clips.loc[same_size, "filename"].map(lambda f: sha256sum(root / f))  # streamed
    conflicts = []
    for _, names in clips.loc[same_size].groupby(digest.to_numpy()):
        if names["label"].nunique() > 1:
            conflicts.append(" = ".join(f"{f} ({lab})" for f, lab in
                                        zip(names["filename"], names["label"], strict=True)))
    if conflicts:
        raise LayoutError(f"{root}: identical audio under different labels: "
                          f"{_shown(conflicts, 5)}; keep one copy under its right label")


def durations(root: Path, clips: pd.DataFrame) -> dict[str, float | None]:
    """The shortest, median and longest clip in seconds, from the files' headers
    (None where no file's header can be read)."""
    seconds = []
    for f in clips["filename"]:
        try:
            info = sf.info(str(root / f))
            seconds.append(info.frames / info.samplerate)
        except (sf.LibsndfileError, RuntimeError, ZeroDivisionError):
            pass  # unreadable: features.on_error decides, naming it
    if not seconds:
        return {"shortest_s": None, "median_s": None, "longest_s": None}
    return {"shortest_s": round(float(np.min(seconds)), 3),
            "median_s": round(float(np.median(seconds)), 3),
            "longest_s": round(float(np.max(seconds)), 3)}


def scan(root: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The clips of a dataset folder (``filename``, ``label``, [``fold``], [``group``]) and
    the files not used, each with the reason."""
    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder")
    files, refused = walk(root)
    meta = [root / m for m in METADATA_FILES if m in files]
    if len(meta) > 1:
        raise LayoutError(f"{root}: both {' and '.join(METADATA_FILES)}: keep one")
    audio = [f for f in files if is_audio(f)]
    others = [f for f in files if not is_audio(f) and f not in METADATA_FILES]
    if meta:
        clips, unused = _metadata_clips(root, meta[0], audio, others)
        listed = set(clips["filename"])
        unused += [(f, "not an audio file") for f in others if f not in listed]
    else:
        clips, unused = _folder_clips(root, audio, others)
        unused += [(f, "not an audio file (by its extension)") for f in others]
    if clips.empty:
        raise LayoutError(
            f"{root}: no audio found ({len(files)} file(s), none of them "
            f"{', '.join(sorted(AUDIO_EXTENSIONS))} in a label folder): lay it out as "
            f"<label>/<clip> or add a metadata.csv with file_name and label columns")
    classes = sorted(clips["label"].unique())
    if len(classes) < 2:
        raise LayoutError(f"{root}: a single class ({classes[0]!r}, {len(clips)} clips): a "
                          "classifier needs two or more; add another label folder")
    _identical_audio(root, clips)
    return clips, refused + unused


def _archive_root(folder: Path) -> Path:
    """Inside an extracted archive, the folder holding the dataset: descend through
    folders that hold nothing but one folder (``recordings.zip`` -> ``recordings/``)."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in METADATA_FILES:
            folder = entries[0]
        else:
            return folder


def extract_archive(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive into ``target``; no member lands outside it (zip:
    soundclf.data.archive's checks; tar: Python's ``data`` extraction filter)."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        extract(archive, ("",), target)
        return
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DownloadError(f"{archive}: cannot extract ({exc}); the archive must be a "
                                "zip or tar(.gz) with no member outside its folder") from None
        return
    raise DownloadError(f"{archive}: not a folder nor a {', '.join(ARCHIVES)} archive")


def assemble(name: str, params: dict, out: Path, cache_dir: Path) -> dict:
    """``data/raw/<name>`` (``out``, an empty folder) for a folder dataset; returns its
    metrics."""
    section = params["data"][name]
    url = str(section["path"])
    path = fetch(url, section.get("sha256"), cache_dir, param=f"data.{name}.path")
    if path.is_dir():
        root, where = path.resolve(), str(path.resolve())
    else:
        extract_archive(path, out / EXTRACTED)
        root = _archive_root(out / EXTRACTED)
        where = root.relative_to(out).as_posix()
    clips, unused = scan(root)
    files = pd.DataFrame({"filename": clips["filename"]})
    stats = [os.stat(root / f) for f in clips["filename"]]
    files["size"] = [s.st_size for s in stats]
    files["mtime_ns"] = [s.st_mtime_ns for s in stats]
    clips.to_csv(out / CLIPS, index=False)
    files.to_csv(out / FILES, index=False)
    pd.DataFrame(unused, columns=["file", "reason"]).to_csv(out / UNUSED, index=False)
    (out / SOURCE).write_text(json.dumps({"root": where, "path": url}, indent=2) + "\n")
    for file, reason in unused[:SHOWN]:
        print(f"{name}: not used: {file}: {reason}")
    if len(unused) > SHOWN:
        print(f"{name}: ... {len(unused)} files not used in all (data/raw/{name}/{UNUSED})")
    counts = clips["label"].value_counts()
    return {"clips_listed": len(clips) + len(unused), "clips_used": len(clips),
            "clips_excluded": len(unused), "classes": len(counts),
            "smallest_class": int(counts.min()), "largest_class": int(counts.max()),
            **durations(root, clips)}


class Folder(Adapter):
    """A ``kind: folder`` dataset named ``name`` (see the module's docstring)."""

    def __init__(self, name: str):
        self.name = name
        self.sources = ()
        self._roots: dict[Path, Path] = {}

    def root(self, raw_dir: Path) -> Path:
        """Where the audio is: the user's folder, in place, or the extracted archive."""
        if raw_dir not in self._roots:
            source = raw_dir / SOURCE
            if not source.is_file():
                raise LayoutError(f"{raw_dir}: no {SOURCE}; rerun dvc repro "
                                  f"download@{self.name}")
            root = Path(json.loads(source.read_text())["root"])
            self._roots[raw_dir] = root if root.is_absolute() else raw_dir / root
        return self._roots[raw_dir]

    def audio_path(self, raw_dir: Path, filename: str) -> Path:
        return self.root(raw_dir) / filename

    def listed(self, raw_dir: Path) -> pd.DataFrame:
        path = raw_dir / CLIPS
        if not path.is_file():
            raise LayoutError(f"{path} is missing; rerun dvc repro download@{self.name}")
        text = {"filename": str, "label": str, "group": str}
        return pd.read_csv(path, dtype=text, keep_default_na=False)

    def rounds(self, meta: pd.DataFrame, params: dict) -> dict[str, np.ndarray]:
        """The metadata's folds, or ``folds`` generated ones; ``valid_fold`` first, every
        fold with ``cv``."""
        key = f"data.{self.name}"
        section = get(params, key)
        groups = meta["group"].astype(str).to_numpy() if "group" in meta else None
        if "fold" in meta:
            fold_of = meta["fold"].astype(int).to_numpy()
            if groups is not None:
                self.check_folds(meta)
        else:
            fold_of = self.generated_folds(meta["label"].astype(str).to_numpy(), groups, section)
        if groups is None:
            print(f"{self.name}: no group column: clips cut from one recording (or one site, "
                  f"day, speaker) can be on both sides of a split and inflate the scores; "
                  f"give a metadata.csv a group column to keep them apart")
        folds = sorted(int(f) for f in np.unique(fold_of) if f > 0)  # 0: training only
        fold = section["valid_fold"]
        check(fold in folds, f"{key}.valid_fold",
              f"must be one of the dataset's folds {folds}, got {fold!r}")
        chosen = [fold, *(f for f in folds if f != fold)] if section["cv"] else [fold]
        return {f"fold{f}": fold_of == f for f in chosen}

    def check_folds(self, meta: pd.DataFrame) -> None:
        """ESC-50's leak check on the metadata's folds: a group's clips of one class in two
        folds are refused, naming the groups; a group that gives clips to different classes
        in different folds (as four ESC-50 recordings do) is taken as given, in one line."""
        if leaking := fold_spread(meta, ["group", "label"]):
            raise LayoutError(
                f"{len(leaking)} group(s) have clips of one class in several folds, so the "
                f"folds would leak: {_shown(leaking, 5)} (check the fold and group columns "
                f"of the metadata)")
        if across := fold_spread(meta, ["group"]):
            print(f"{self.name}: {len(across)} group(s) give clips to different classes in "
                  f"different folds, taken as the metadata gives them: {_shown(across, 5)}")

    def generated_folds(self, labels: np.ndarray, groups: np.ndarray | None,
                        section: dict) -> np.ndarray:
        """Each clip's fold (1 to ``folds``), stratified by label, ``group`` kept together;
        a class with fewer clips (groups) than folds fails, or with ``small_classes:
        train`` is in training only (fold 0, never validated on)."""
        n, key = section["folds"], f"data.{self.name}"
        ids = np.arange(len(labels)) if groups is None else groups
        unit = "clips" if groups is None else "groups"
        per_class = pd.Series(ids).groupby(labels).nunique()
        small = sorted(per_class.index[per_class < n])
        if small and section["small_classes"] == "fail":
            raise LayoutError(
                f"{key}: {len(small)} class(es) have fewer {unit} than {key}.folds = {n}, so "
                f"they cannot be in every fold: "
                f"{_shown([f'{c} ({per_class[c]})' for c in small])}; add recordings, lower "
                f"{key}.folds, or set {key}.small_classes: train to keep them in training "
                f"only")
        if small:
            print(f"{self.name}: class(es) with fewer {unit} than {n} folds kept in training "
                  f"only ({key}.small_classes: train): {', '.join(small)}")
        fold_of = np.zeros(len(labels), dtype=int)
        rest = np.flatnonzero(~np.isin(labels, small))
        if len(np.unique(labels[rest])) < 2:
            raise LayoutError(f"{key}: fewer than two classes have {n} {unit} or more; "
                              f"lower {key}.folds or add recordings")
        seed = section["split_seed"]
        splitter = (StratifiedKFold(n, shuffle=True, random_state=seed) if groups is None
                    else StratifiedGroupKFold(n, shuffle=True, random_state=seed))
        for k, (_, valid) in enumerate(splitter.split(rest, labels[rest],
                                                      None if groups is None else ids[rest])):
            fold_of[rest[valid]] = k + 1
        return fold_of
