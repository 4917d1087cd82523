"""The figures of a dataset's stages that reviewers read beside the scores, put where git
keeps them.

The stages write them as cached outputs in ``data/results/<dataset>/``, so that every
expensive stage stays restorable from DVC's run-cache (an output with ``cache: false``
that is not a metric or a plot would stop DVC from saving the stage's runs): the
download's clip counts (``dataset.json``), the feature extraction's counts and the clips
it left out (``features.json``, ``skipped.csv``), and every model's figures
(``<model>.json``: each round's scores and counts, losses, what ``tune`` chose, the
ensemble's weights). The ``details`` stage copies them into ``metrics/<dataset>/``
(the models' into ``details/``), which git tracks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from soundclf import models
from soundclf.io import atomic_dir, write_with

DATASET_FILES = ("dataset.json", "features.json", "skipped.csv")


def detail_files(results: Path, dataset: str, params: dict) -> dict[str, Path]:
    """Each file to copy, by where it goes in the dataset's metrics folder: the dataset's
    own files, and the figures of every registered model whose stage runs for the dataset
    (a file left by a model switched off since, e.g. the CNN's after ``cnn.datasets``
    changed, is not copied)."""
    found = {}
    for name in DATASET_FILES:
        if not (results / name).is_file():
            raise FileNotFoundError(f"{results / name} is missing: rerun the stage that "
                                    "writes it (dvc repro)")
        found[name] = results / name
    for model, entry in models.every().items():
        path = results / f"{model}.json"
        if path.is_file() and entry.runs_on(params, dataset):
            found[f"details/{model}.json"] = path
    return found


def copy_details(results: Path, metrics: Path, dataset: str, params: dict) -> list[str]:
    """Copy :func:`detail_files` into ``metrics``, each file atomically and ``details/``
    as a whole (a model no longer run leaves no file there); returns what was copied."""
    files = detail_files(results, dataset, params)
    with atomic_dir(metrics / "details") as tmp:
        for name, source in files.items():
            if name.startswith("details/"):
                shutil.copyfile(source, tmp / Path(name).name)
    for name, source in files.items():
        if not name.startswith("details/"):
            write_with(metrics / name, lambda tmp, source=source: shutil.copyfile(source, tmp))
    return list(files)
