"""Every clip's embedding by a pretrained encoder (soundclf.features.encoders), pooled over
its windows.

Each clip is read whole, whatever its length, cut into the encoder's windows every ``hop``
of a window (a clip shorter than one window is zero-padded to one), and every window
embedded: the windows are cut by the extraction workers (soundclf.features.extraction),
the network runs in the calling process, ``batch_size`` windows at a time, on ``device``.
The per-clip cache keeps each clip's window embeddings, so a new ``pooling`` recomputes
nothing. A window's embedding is the output of each network block in ``blocks`` (averaged
over bands, maximized over frames); a clip's is each statistic of ``pooling`` (mean, max,
std) over its windows, concatenated in that order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundclf.data.audio import Recipe
from soundclf.devices import torch_device
from soundclf.features.encoders import (
    AisfxFrontEnd,
    embed_windows,
    encoder,
    load_network,
    verify_checkpoint,
)
from soundclf.features.extraction import Results, compute_dataset
from soundclf.table import save_inputs

POOLING = {"mean": np.mean, "max": np.max, "std": np.std}


@dataclass(frozen=True)
class EncoderWindows(Recipe):
    """A whole clip cut into the encoder's input windows (computed in the workers). The
    fields are what the cached window embeddings depend on."""

    duration: float | None = None
    encoder: str = "aisfx"
    weights: str = ""  # the checkpoint's SHA-256
    hop: float = 0.5
    blocks: tuple[int, ...] = (4,)  # what the network gives (soundclf.features.encoders.Cnn9)
    peak_normalize: bool = False
    # what else the values depend on: the front end's constants, torch, the device's kind
    front_end: AisfxFrontEnd = AisfxFrontEnd()
    torch: str = torch.__version__
    device: str = "cpu"

    def compute(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        front = self.front_end
        return [front.windows(front.spectrogram(y, self.peak_normalize), self.hop)
                .astype(np.float32) for y in ys]


def embed(results: Results, net: nn.Module, batch_size: int, device: torch.device,
          blocks: tuple[int, ...] = (4,)) -> Results:
    """The workers' windows of each clip turned into its window embeddings, a network batch
    of several clips' windows at a time; failures pass through."""
    waiting: list[tuple[int, np.ndarray]] = []

    def flush() -> Iterator[tuple[int, np.ndarray]]:
        values = embed_windows(net, np.concatenate([w for _, w in waiting]), batch_size, device,
                               blocks)
        ends = np.cumsum([len(w) for _, w in waiting])
        yield from ((i, part) for (i, _), part in
                    zip(waiting, np.split(values, ends[:-1]), strict=True))
        waiting.clear()

    for i, result in results:
        if isinstance(result, str):
            yield i, result
            continue
        waiting.append((i, result))
        if sum(len(w) for _, w in waiting) >= batch_size:
            yield from flush()
    if waiting:
        yield from flush()


def pool(windows: np.ndarray, pooling: list[str]) -> np.ndarray:
    """(len(pooling) x dim,) of a clip's (windows, dim) embeddings."""
    return np.concatenate([POOLING[stat](windows, axis=0) for stat in pooling])


def encoder_windows(params: dict, device: torch.device) -> EncoderWindows:
    """The recipe of the ``embeddings`` section (and the encoder's ``weights`` SHA-256)."""
    section = params["embeddings"]
    enc = encoder(section["encoder"])
    return EncoderWindows(sr=enc.front_end.sr, encoder=enc.name,
                   weights=params["weights"][enc.name]["sha256"].lower(), hop=section["hop"],
                   blocks=tuple(sorted(section["blocks"])),
                   peak_normalize=section["peak_normalize"], front_end=enc.front_end,
                   device=device.type)


def network(recipe: EncoderWindows, weights: Path, device: torch.device) -> nn.Module:
    """The recipe's encoder with the weights of ``weights``, checked against its SHA-256."""
    enc = encoder(recipe.encoder)
    verify_checkpoint(weights, recipe.weights, enc.name)
    return load_network(enc, weights, device)


def write_embeddings(dataset: str, raw_dir: Path, weights: Path, params: dict, out: Path,
        cache_dir: Path) -> list[str]:
    """The whole stage; returns the filenames left out (``features.on_error: skip``)."""
    section = params["embeddings"]
    device = torch_device(section["device"], "embeddings.device")
    recipe = encoder_windows(params, device)
    net = network(recipe, weights, device)
    done = compute_dataset(
        dataset, raw_dir, recipe, cache_dir, params["features"],
        then=lambda results: embed(results, net, section["batch_size"], device, recipe.blocks),
        params=params)
    values = np.stack([pool(w, section["pooling"]) for w in done.values()])
    save_inputs(out, done.filenames(), values.astype(np.float32))
    return done.skipped()
