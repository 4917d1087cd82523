"""A small CNN on log-mel spectrograms (its settings: ``cnn.training``, named below without
the prefix; input from the `spectrograms` stage; ``cnn.datasets``: where it runs).

Every other model sees per-bin means and standard deviations: the time structure of a
sound (onsets, ticks, a rotor's rhythm) is averaged away. This one reads each clip's
log-mel spectrogram (stages.spectrograms), standardized per mel band on the training
clips, through ``len(channels)`` blocks of 3x3 convolution, batch norm, ReLU and 2x2
max pooling, then average and max pooling over what is left of time and frequency,
dropout (``dropout``) and a linear layer. Trained by fastai one-cycle like the MLPs
(soundclf.models.fastai_base), with the augmentations that matter for small audio sets,
drawn anew for every batch from torch's seeded generator:

- a random circular shift in time of up to ``shift`` of the clip (sounds start
  anywhere; ESC clips are padded with silence);
- SpecAugment masks: one band of up to ``freq_mask`` mel bands and one span of up to
  ``time_mask`` frames set to the band's mean;
- mixup (``mixup``: its Beta(alpha, alpha); 0 = off), fastai's ``MixUp``.

``device``: ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``. ``precision``:
``bf16`` computes the network under ``torch.autocast`` in bfloat16 (weights, optimizer
and loss stay float32), ``fp32`` in float32, ``auto`` bf16 where the device has it natively
(soundclf.devices.autocast_dtype). The network runs in channels-last layout, which
oneDNN's CPU convolutions are fastest in (docs/models.md, the CNN's cost).
"""

from __future__ import annotations

import numpy as np
import torch
from fastai.tabular.all import Callback, MixUp
from torch import nn

from soundclf.devices import autocast_dtype, torch_device
from soundclf.models import Model
from soundclf.models.fastai_base import FastaiClassifier


class SpecAugment(Callback):
    """Random time shift and one frequency and one time mask per clip, training only."""

    order = 50  # before MixUp, which mixes the augmented clips

    def __init__(self, shift: float, freq_mask: int, time_mask: int):
        self.shift, self.freq_mask, self.time_mask = shift, freq_mask, time_mask

    def before_batch(self) -> None:
        if not self.training:
            return
        x = self.xb[0]  # (clips, 1, bands, frames), standardized: 0 is a band's mean
        n, _, bands, frames = x.shape
        if self.shift:
            most = int(self.shift * frames)
            steps = torch.randint(-most, most + 1, (n,)).tolist()
            x = torch.stack([torch.roll(clip, k, dims=-1) for clip, k in zip(x, steps,
                                                                              strict=True)])
        x = x * self._keep(n, bands, self.freq_mask, x.device)[:, None, :, None]
        x = x * self._keep(n, frames, self.time_mask, x.device)[:, None, None, :]
        self.learn.xb = (x,)

    @staticmethod
    def _keep(n: int, size: int, widest: int, device) -> torch.Tensor:
        """(n, size) of 1, with one span of 0 to ``widest`` zeros per row at random."""
        width = torch.randint(0, min(widest, size) + 1, (n, 1))
        start = (torch.rand(n, 1) * (size - width + 1)).long()
        positions = torch.arange(size)[None]
        return (~((positions >= start) & (positions < start + width))).float().to(device)


class ConvNet(nn.Module):
    """``len(channels)`` blocks of 3x3 convolution, batch norm, ReLU and 2x2 max pooling,
    pooled, then a linear layer; computed under autocast in ``dtype`` if given (the logits
    are float32 either way).

    Each block applies its ReLU after the pool: ``max`` and ``relu`` commute, so the values
    and gradients are those of ReLU then pool, on a quarter of the values (docs/models.md,
    the CNN's cost)."""

    def __init__(self, channels: list[int], n_classes: int, dropout: float,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.dtype = dtype
        blocks, c_in = [], 1
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            x = self.features(x.contiguous(memory_format=torch.channels_last))
            x = self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
        return x.float()


class SpectrogramCNN(FastaiClassifier):
    """The CNN as a scikit-learn classifier; ``X``: log-mel spectrograms (clips, bands,
    frames). The constructor takes ``seed`` and the keys of the ``cnn`` section."""

    section = "cnn.training"

    def __init__(self, channels=(16, 32, 64, 128), dropout=0.3, epochs=80, lr=3e-3,
                 batch_size=32, wd=None, shift=0.5, freq_mask=6, time_mask=32, mixup=0.4,
                 class_weights="none", grad_clip=None, early_stopping=None,
                 early_stopping_valid=0.1, device="auto", precision="auto", seed=42):
        self.channels = channels
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.wd = wd
        self.shift = shift
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.mixup = mixup
        self.class_weights = class_weights
        self.grad_clip = grad_clip
        self.early_stopping = early_stopping
        self.early_stopping_valid = early_stopping_valid
        self.device = device
        self.precision = precision
        self.seed = seed

    def torch_device(self) -> torch.device:
        return torch_device(self.device, "cnn.training.device")

    def prepare(self, x: np.ndarray, trained: np.ndarray) -> None:
        self.mean_ = x[trained].mean(axis=(0, 2), keepdims=True)[0]  # per band: (bands, 1)
        self.std_ = x[trained].std(axis=(0, 2), keepdims=True)[0] + 1e-6

    def inputs(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (((x - self.mean_) / self.std_)[:, None].astype(np.float32),)

    def network(self, x: np.ndarray, n_classes: int) -> nn.Module:
        dtype = autocast_dtype(self.precision, self.torch_device(), "cnn.training.precision")
        return ConvNet(list(self.channels), n_classes, self.dropout, dtype).to(
            memory_format=torch.channels_last)

    def callbacks(self) -> list[Callback]:
        found = [SpecAugment(self.shift, self.freq_mask, self.time_mask)]
        return found + ([MixUp(self.mixup)] if self.mixup else [])


def build(params: dict, features: list[str]) -> SpectrogramCNN:
    return SpectrogramCNN(seed=params["seed"], **params["cnn"]["training"])


MODELS = [Model("cnn", "CNN", params=("seed", "cnn.training"), build=build, tune="cnn",
                tuned_section="cnn.training", inputs="spectrograms",
                datasets=lambda params: params["cnn"]["datasets"],
                architecture=lambda params: str(params["cnn"]["training"]["channels"]))]
