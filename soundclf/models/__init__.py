"""The model registry: every model the pipeline trains, each described once.

A model family is one module here (``svc.py``, ``nn.py``, ``pretrained.py``...) with a
``MODELS`` list of :class:`Model`. A model's name is its family's module name, or that
name and a suffix after a dash (``nn-2layer`` is in ``nn.py``), so a stage can load the
one module it needs: ``get("svc")`` imports ``soundclf/models/svc.py`` and nothing else.

Adding a model (docs/development.md): its module here, its section in
params.yaml and its keys in ``soundclf/params.py``'s SCHEMA, and a ``train-<name>`` block
in dvc.yaml running ``python -m stages.train <name>``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from soundclf.params import ParamError
from soundclf.params import get as get_param


@dataclass(frozen=True)
class Model:
    """One trainable model, as the stages, ``tune``, ``compare`` and the ensemble see it.

    ``build(params, features)`` returns an unfitted scikit-learn-compatible classifier
    (``fit``, ``predict``; ``predict_proba`` where it has one) for the feature columns
    ``features``, reading only the keys in ``params``. ``fit`` may also take ``groups``,
    ``watch`` and ``live`` (soundclf.evaluation.fit.fit_predict).
    """

    name: str  # as in paths and stage names: train-<name>, metrics/<dataset>/<name>.json
    display: str  # in compare's table and charts
    params: tuple[str, ...]  # the params.yaml keys it reads, as its stage declares them
    build: Callable[[dict, list[str]], Any]
    tune: str | None = None  # its search grid, tune.<tune>, over the keys of ...
    tuned_section: str | None = None  # ... this section (default: the grid's name)
    architecture: Callable[[dict], str] | None = None  # for compare: e.g. "[200, 100]"
    # what X is: "features", "spectrograms" or "embeddings" (stages.train --inputs); the
    # ensemble's, "probabilities" (stages.train_ensemble)
    inputs: str = "features"
    # the datasets its stage runs for (dvc.yaml's foreach); None: every one of ``datasets``
    datasets: Callable[[dict], list[str]] | None = None
    # inputs "embeddings": the encoder that computes them (soundclf.features.encoders)
    encoder: str | None = None
    # whether ``build`` also takes ``weights``, that encoder's weights folder (stages.train
    # --weights): the zero-shot model's text tower
    reads_weights: bool = False

    def runs_on(self, params: dict, dataset: str) -> bool:
        """Whether its stage runs for ``dataset`` with these params."""
        return dataset in (self.datasets(params) if self.datasets else params["datasets"])

    @property
    def section(self) -> str | None:
        """The params section that ``tune.<tune>``'s candidates are values of."""
        return self.tuned_section or self.tune

    def describe(self, params: dict) -> str:
        """Its display name and architecture, e.g. ``NN [200, 100]``."""
        return f"{self.display} {self.architecture(params)}" if self.architecture else self.display


def module_of(name: str) -> str:
    """The module that defines model ``name``: ``soundclf.models.nn`` for ``nn-2layer``."""
    return f"{__name__}.{name.split('-', 1)[0]}"


def get(name: str) -> Model:
    """The model called ``name``, importing its family's module only."""
    try:
        module = importlib.import_module(module_of(name))
    except ModuleNotFoundError as exc:
        if exc.name != module_of(name):
            raise
        module = None
    found = {m.name: m for m in getattr(module, "MODELS", [])}
    if name not in found:
        renamed = " ('pretrained' is now pretrained-<encoder>, e.g. pretrained-aisfx)" \
            if name == "pretrained" else ""
        raise ParamError(f"no model called {name!r}{renamed} (known: {', '.join(every())})")
    return found[name]


def every() -> dict[str, Model]:
    """Every registered model by name, in module order (svc, nn, cnn, pretrained, zeroshot,
    ensemble first)."""
    first = ["svc", "nn", "cnn", "pretrained", "zeroshot", "ensemble"]
    names = sorted((m.name for m in pkgutil.iter_modules(__path__)),
                   key=lambda n: (first.index(n) if n in first else len(first), n))
    return {model.name: model for family in names  # a shared module registers none
            for model in getattr(importlib.import_module(f"{__name__}.{family}"), "MODELS", [])}


def architecture_of(key: str) -> Callable[[dict], str]:
    """An ``architecture`` that shows the value of a params key, e.g. ``nn.layers``."""
    return lambda params: str(get_param(params, key))
