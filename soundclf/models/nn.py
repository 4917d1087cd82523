"""fastai tabular MLPs, one-cycle training (the ``nn`` and ``nn_deep`` sections).

Two models: ``nn-2layer`` trains ``nn.layers``, ``nn-5layer`` trains ``nn_deep.layers``;
both take every other setting from ``nn.training``, so a new training setting reaches both
stages (each declares that section whole) while ``nn.layers`` reruns only the first.

The target is always categorical (a class index per label): fastai would otherwise make
an integer label a one-output regression, which is how the original FreeSound run
collapsed to a single class. Training, early stopping and curves: soundclf.models.fastai_base.
"""

from __future__ import annotations

import numpy as np
import torch
from fastai.tabular.all import TabularModel, tabular_config

from soundclf.models import Model, architecture_of
from soundclf.models.fastai_base import FastaiClassifier


class TabularNN(FastaiClassifier):
    """fastai's tabular MLP (``TabularModel``, no categorical columns) on feature rows.

    The constructor takes ``layers``, ``seed`` and the keys of ``nn.training``.
    """

    section = "nn.training"
    nan_hint = " or use a scaler (normalize.scaler)"

    def __init__(self, layers=(200, 100), epochs=10, lr=1e-3, batch_size=64, ps=0.0,
                 embed_p=0.0, wd=None, class_weights="none", grad_clip=None,
                 early_stopping=None, early_stopping_valid=0.1, seed=42):
        self.layers = layers
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.ps = ps
        self.embed_p = embed_p
        self.wd = wd
        self.class_weights = class_weights
        self.grad_clip = grad_clip
        self.early_stopping = early_stopping
        self.early_stopping_valid = early_stopping_valid
        self.seed = seed

    def network(self, x: np.ndarray, n_classes: int) -> torch.nn.Module:
        return TabularModel([], x.shape[1], n_classes, list(self.layers),
                            **tabular_config(ps=self.ps, embed_p=self.embed_p))

    def inputs(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """No categorical columns (an empty integer array), then the features."""
        return np.zeros((len(x), 0), dtype=np.int64), x


def builder(layers_key: str):
    """``build`` for an MLP whose hidden layers are ``layers_key``'s value."""
    section, key = layers_key.split(".")
    return lambda params, features: TabularNN(
        layers=params[section][key], seed=params["seed"], **params["nn"]["training"])


MODELS = [
    Model("nn-2layer", "NN", params=("seed", "nn"), build=builder("nn.layers"),
          tune="nn", tuned_section="nn.training", architecture=architecture_of("nn.layers")),
    Model("nn-5layer", "NN", params=("seed", "nn.training", "nn_deep"),
          build=builder("nn_deep.layers"), tune="nn", tuned_section="nn.training",
          architecture=architecture_of("nn_deep.layers")),
]
