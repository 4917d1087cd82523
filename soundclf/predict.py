"""Classify recordings with a trained model of any family.

    python -m soundclf predict DATASET MODEL AUDIO [AUDIO ...] [--top 3] [--csv OUT]
                               [--models data/models] [--weights data/weights] [--n-jobs 1]

AUDIO is a file or a folder (every audio file inside it, in sub-folders too). Files that
are missing or cannot be read do not stop the others: the good ones are classified, each
bad one is listed with its reason, and the command exits with status 1.

MODEL is a model the pipeline trained for DATASET (``svc``, ``nn-2layer``, ``nn-5layer``,
``cnn``, ``pretrained-aisfx``, ``ensemble``...): its file ``data/models/DATASET/MODEL.joblib``
(soundclf.trained) holds the settings its inputs were computed with when it was trained, so
each recording's inputs are computed from its audio the same way (summary features and
the scaler, a log-mel spectrogram, or embeddings by the encoder whose checkpoint must
still be the one it was trained with), whatever params.yaml says now. The ensemble's
members are read from their own files beside it, and must be the ones it learned from.

Prints each file's ``--top`` classes with their probabilities; ``--csv`` writes a row per
file instead: ``filename``, ``predicted`` and ``p_<class>`` for every class.

``--labels "siren, dog bark, ..."`` with a zero-shot model (``zeroshot-clap``): the
recordings classified into those labels, in that order, with no training at all (each
label's prompt embedded by CLAP's text tower, soundclf.models.zeroshot); the model's
settings are those it was trained with where DATASET has one, else params.yaml's, and
CLAP's weights are ``--weights``/clap (stage weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from soundclf import models, trained
from soundclf.data.audio import Recipe
from soundclf.data.folder import is_audio
from soundclf.evaluation.fit import class_probabilities
from soundclf.features.extraction import ExtractionError, compute
from soundclf.features.spectrograms import LogMelSpectrogram
from soundclf.features.summary import SummaryFeatures
from soundclf.io import write_with
from soundclf.params import ParamError, load_params
from soundclf.table import PREFIX


class PredictError(ValueError):
    """Audio or a model that cannot be used, named in the message."""


def audio_files(inputs: list[Path]) -> tuple[list[Path], dict[Path, str]]:
    """The files to classify: each file given, every audio file under each folder given
    (sorted, recursively; soundclf.data.folder's extensions); and each input that is
    neither, with the reason."""
    found, bad = [], {}
    for path in map(Path, inputs):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and is_audio(p.name)
                            and not any(part.startswith(".") for part in
                                        p.relative_to(path).parts))
            if inside:
                found += inside
            else:
                bad[path] = "a folder with no audio file in it"
        elif path.is_file():
            found.append(path)
        else:
            bad[path] = "does not exist"
    return list(dict.fromkeys(found)), bad


class Predictor:
    """Trained models of one dataset, applied to a list of recordings; each kind of inputs
    is computed once for the models that share it (the ensemble's feature members). A file
    whose inputs cannot be computed is recorded in ``errors`` (its rows are placeholders)."""

    def __init__(self, folder: Path, paths: list[Path], weights: Path, n_jobs: int = 1):
        self.folder, self.paths, self.weights, self.n_jobs = folder, paths, weights, n_jobs
        self._inputs: dict[str, np.ndarray] = {}
        self.errors: dict[int, str] = {}

    def load(self, model: str) -> trained.Trained:
        return trained.load(self.folder / f"{model}.joblib")

    def _computed(self, recipe: Recipe, then=None) -> list[np.ndarray]:
        results = compute(self.paths, recipe, self.n_jobs)
        if then is not None:
            results = then(results)
        values = {}
        for i, result in results:
            if isinstance(result, str):
                self.errors.setdefault(i, result)
            else:
                values[i] = result
        if not values:
            raise PredictError("no file could be read:\n  " + "\n  ".join(
                f"{self.paths[i]}: {why}" for i, why in sorted(self.errors.items())))
        blank = np.zeros_like(next(iter(values.values())))  # a bad file's row, dropped after
        return [values.get(i, blank) for i in range(len(self.paths))]

    def _compute(self, kind: str, settings: dict) -> np.ndarray:
        if kind == "features":
            return np.stack(self._computed(SummaryFeatures.from_params(settings["features"])))
        if kind == "spectrograms":  # float16, as the spectrograms stage stores them
            return np.stack(self._computed(LogMelSpectrogram.from_params(settings["spectrograms"]))
                            ).astype(np.float16)
        if kind == "embeddings":
            import torch  # the other families need no torch to be imported here

            from soundclf.features.embeddings import (
                embed,
                encoder_windows,
                network,
                pool,
                weights_identity,
            )
            device = torch.device("cpu")
            name = settings["embeddings"]["encoder"]
            folder = self.weights / name  # checked: still the weights it was trained with
            recipe = encoder_windows(settings, device, folder,
                                     weights_identity(name, settings, folder))
            net = network(recipe, folder, device)
            windows = self._computed(recipe, lambda results: embed(results, net, 32))
            pooling = settings["embeddings"]["pooling"]
            return np.stack([pool(w, pooling) for w in windows]).astype(np.float32)
        raise PredictError(f"no way to compute inputs of kind {kind!r}")

    def inputs(self, model: trained.Trained) -> np.ndarray:
        key = json.dumps([model.inputs, model.settings], sort_keys=True)
        if key not in self._inputs:
            self._inputs[key] = self._compute(model.inputs, model.settings)
        values = self._inputs[key]
        if model.inputs != "features":
            return values
        if model.scaler is None:
            raise PredictError(f"model {model.model} was saved without its scaler (stages."
                               "train --scaler): retrain it with dvc repro")
        return model.scaler.transform(values).astype(np.float32)

    def zero_shot(self, name: str, labels: list[str]) -> trained.Trained:
        """Zero-shot model ``name`` for ``labels``: its settings from its file where trained,
        else from params.yaml; its prompts embedded now."""
        entry = models.get(name)
        if not entry.reads_weights:
            zero = [m for m, e in models.every().items() if e.reads_weights]
            raise PredictError(f"--labels needs a zero-shot model ({', '.join(zero)}), not "
                               f"{name}")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise PredictError(f"--labels needs two or more distinct labels, got {labels}")
        path = self.folder / f"{name}.joblib"
        if path.is_file():
            found = trained.load(path)
            settings = found.settings
            config = {"zeroshot": {"template": found.estimator.template},
                      "embeddings": settings["embeddings"]}
        else:
            params = load_params()
            settings = trained.input_settings("embeddings", params, entry.encoder)
            config = params
        estimator = entry.build(config, None, weights=self.weights / entry.encoder)
        estimator.fit(None, None, classes=labels)
        return trained.Trained(name, estimator, labels, "embeddings", settings)

    def probabilities(self, model: trained.Trained) -> np.ndarray:
        """(files, classes) probabilities of ``model.classes``."""
        classes = np.asarray(model.classes)
        same = list(getattr(model.estimator, "classes_", [])) == list(classes)
        if model.inputs != "probabilities" and same and hasattr(model.estimator,
                                                                "predict_proba"):
            return model.estimator.predict_proba(self.inputs(model))  # typed labels' order
        if model.inputs != "probabilities":
            return class_probabilities(model.estimator, self.inputs(model), classes)
        members = []
        for name, fingerprint in model.members.items():
            member = self.load(name)
            if member.probabilities != fingerprint or list(member.classes) != list(classes):
                raise trained.NotTrainedError(
                    f"{self.folder / f'{name}.joblib'} is not the {name} the ensemble "
                    f"learned from (trained again since?): rerun the ensemble (dvc repro "
                    f"train-ensemble@{self.folder.name})")
            members.append(self.probabilities(member))
        return model.estimator.predict_proba(np.stack(members, axis=1))


def parse_labels(text: str) -> list[str]:
    """``"siren, dog bark"`` -> ``["siren", "dog bark"]``."""
    return [label.strip() for label in text.split(",") if label.strip()]


def predict(folder: Path, model: str, paths: list[Path], weights: Path,
            n_jobs: int = 1, labels: list[str] | None = None
            ) -> tuple[pd.DataFrame, dict[str, str]]:
    """A row per file classified (``filename``, ``predicted``, ``p_<class>`` of every
    class; with ``labels``, of those, by a zero-shot model), and each input that could not
    be, with the reason. ``paths`` are files or folders (:func:`audio_files`)."""
    files, bad = audio_files(paths)
    predictor = Predictor(folder, files, weights, n_jobs)
    found = predictor.zero_shot(model, labels) if labels is not None else predictor.load(model)
    failed = {str(p): why for p, why in bad.items()}
    if not files:
        raise PredictError("no audio file to classify:\n  " + "\n  ".join(
            f"{p}: {why}" for p, why in failed.items()))
    probs = predictor.probabilities(found)
    classes = np.asarray(found.classes)
    table = pd.DataFrame(probs, columns=[f"{PREFIX}{c}" for c in classes])
    table.insert(0, "predicted", classes[probs.argmax(axis=1)])
    table.insert(0, "filename", [str(p) for p in files])
    failed |= {str(files[i]): why for i, why in sorted(predictor.errors.items())}
    keep = [i for i in range(len(files)) if i not in predictor.errors]
    return table.iloc[keep].reset_index(drop=True), failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m soundclf predict``)."""
    parser.add_argument("dataset", help="the dataset the model was trained on, e.g. esc50")
    parser.add_argument("model", help="svc, nn-2layer, nn-5layer, cnn, pretrained-<encoder>, "
                        "zeroshot-clap, ensemble")
    parser.add_argument("audio", type=Path, nargs="+",
                        help="recordings (WAV, OGG, FLAC, MP3...) or folders of them")
    parser.add_argument("--top", type=int, default=3, help="classes shown per file")
    parser.add_argument("--csv", type=Path, help="write every class's probability here")
    parser.add_argument("--models", type=Path, default=Path("data/models"),
                        help="the trained models' folder (default: data/models)")
    parser.add_argument("--weights", type=Path, default=Path("data/weights"),
                        help="the encoders' weights, a folder each (default: data/weights)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel audio workers")
    parser.add_argument("--labels", type=parse_labels, help="a zero-shot model's classes, "
                        "comma-separated, e.g. \"siren, dog bark\": no training needed")


def run(args: argparse.Namespace) -> None:
    """Classify ``args.audio`` and print (or ``--csv``) the result; exits naming the fault."""
    try:
        table, failed = predict(args.models / args.dataset, args.model, args.audio,
                                args.weights, args.n_jobs, args.labels)
    except (PredictError, trained.NotTrainedError, ExtractionError, ParamError,
            ValueError) as exc:
        sys.exit(f"predict: {exc}")
    if args.csv is not None:
        write_with(args.csv, lambda tmp: table.to_csv(tmp, index=False))
        print(f"predict: {len(table)} file(s) -> {args.csv}")
    else:
        probs = table.filter(like=PREFIX)
        for filename, row in zip(table["filename"], probs.to_numpy(), strict=True):
            best = np.argsort(-row)[: args.top]
            shown = ", ".join(f"{probs.columns[k][len(PREFIX):]} {row[k]:.3f}" for k in best)
            print(f"{filename}: {shown}")
    if failed:
        sys.exit(f"predict: {len(failed)} input(s) not classified ({len(table)} were):\n  "
                 + "\n  ".join(f"{p}: {why}" for p, why in failed.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m soundclf predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args(argv))
