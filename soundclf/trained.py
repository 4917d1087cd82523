"""What a model stage saves: a fitted model with all it needs to classify new recordings.

``data/models/<dataset>/<model>.joblib`` is a :class:`Trained`: the primary round's fitted
estimator, its classes (the columns of its probabilities), and how its inputs are computed
from audio: the params they were made with when it was trained (``settings``, the keys of
:data:`INPUT_PARAMS`, which its stage declares), and for the feature models the scaler of
the same round. ``predict`` reads it; params.yaml as it is today plays no part.

The ensemble's holds no inputs of its own: its members' SHA-256 of the probabilities it
learned from, which their own files record of the probabilities they wrote, so that a
member trained anew since is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from soundclf.data.archive import sha256sum
from soundclf.io import write_with
from soundclf.params import get as get_param

# the params a kind of inputs is computed from audio with ({encoder}: the model's encoder,
# recorded as embeddings.encoder)
INPUT_PARAMS = {
    "features": tuple(f"features.{k}" for k in ("sr", "duration", "n_fft", "hop_length",
                                                 "n_mels", "cqt_bins")),
    "spectrograms": ("spectrograms",),
    "embeddings": ("embeddings.hop", "embeddings.blocks", "embeddings.precision",
                   "embeddings.peak_normalize", "embeddings.pooling",
                   "weights.{encoder}.sha256"),
    "probabilities": (),
}


class NotTrainedError(ValueError):
    """A model file that is missing, of another kind, or no longer matching its parts."""


def input_keys(inputs: str, encoder: str | None = None) -> list[str]:
    """The params keys of :data:`INPUT_PARAMS` for ``inputs``, ``encoder``'s filled in."""
    return [key.format(encoder=encoder) for key in INPUT_PARAMS[inputs]]


def input_settings(inputs: str, params: dict, encoder: str | None = None) -> dict:
    """The part of ``params`` that the inputs of kind ``inputs`` are computed with, nested
    as in params.yaml (``{"features": {"sr": 44100, ...}}``); embeddings' with their
    ``encoder`` as ``embeddings.encoder``."""
    found: dict = {}
    for key in input_keys(inputs, encoder):
        *sections, last = key.split(".")
        node = found
        for part in sections:
            node = node.setdefault(part, {})
        node[last] = get_param(params, key)
    if inputs == "embeddings":
        found["embeddings"]["encoder"] = encoder
    return found


@dataclass
class Trained:
    model: str  # its name in the registry (soundclf.models)
    estimator: Any
    classes: list[str]  # sorted: the columns of its probabilities
    inputs: str  # features | spectrograms | embeddings | probabilities (the ensemble)
    settings: dict  # input_settings(inputs, params) when it was trained
    scaler: Any = None  # features: normalize's scaler of the same round
    probabilities: str = ""  # SHA-256 of the probabilities file its stage wrote
    members: dict[str, str] = field(default_factory=dict)  # ensemble: member -> that SHA-256


def save(path: Path, trained: Trained) -> None:
    write_with(path, lambda tmp: joblib.dump(trained, tmp))


def load(path: Path) -> Trained:
    """The model file at ``path``, refused with a message naming it if it is not one."""
    if not path.is_file():
        raise NotTrainedError(f"{path} does not exist: the model was never trained (dvc "
                              f"repro train-{path.stem}@{path.parent.name})")
    try:
        found = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file: pickle raises many kinds
        raise NotTrainedError(f"{path} is not a model file ({type(exc).__name__}: {exc})"
                              ) from None
    if not isinstance(found, Trained):
        raise NotTrainedError(f"{path} holds a {type(found).__name__}, not a model of "
                              "stages.train: retrain it (dvc repro -f "
                              f"train-{path.stem}@{path.parent.name})")
    return found


def fingerprint(path: Path) -> str:
    """What the ensemble and its members record of a probabilities file: its SHA-256."""
    return sha256sum(path)
