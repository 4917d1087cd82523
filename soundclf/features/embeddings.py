"""Every clip's embedding by a pretrained encoder (soundclf.features.encoders), pooled over
its windows.

Each clip is read whole, whatever its length, cut into the encoder's windows every ``hop``
of a window (a clip shorter than one window is padded to one: aisfx with zeros, CLAP and
AST as their feature extractors pad), and every window embedded: the windows are cut by
the extraction workers (soundclf.features.extraction), the network runs in the calling
process, ``batch_size`` windows at a time, on ``device``. The per-clip cache keeps each
clip's window embeddings, so a new ``pooling`` recomputes nothing. A clip's embedding is
each statistic of ``pooling`` (mean, max, std) over its windows, concatenated in that
order. One encoder a run of the stage: ``embeddings@<dataset>-<encoder>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from soundclf.data.audio import Recipe
from soundclf.devices import torch_device
from soundclf.features.encoders import (
    CHECKPOINT,
    Embedder,
    EncoderWindows,
    embed_windows,
    encoder,
    verify_checkpoint,
)
from soundclf.features.extraction import Results, compute_dataset
from soundclf.table import save_inputs

__all__ = ["EncoderWindows", "embed", "pool", "encoder_windows", "network",
           "write_embeddings"]

POOLING = {"mean": np.mean, "max": np.max, "std": np.std}


def embed(results: Results, net: Embedder | torch.nn.Module, batch_size: int,
          device: torch.device | None = None, blocks: tuple[int, ...] = (4,)) -> Results:
    """The workers' windows of each clip turned into its window embeddings, a network batch
    of several clips' windows of one shape at a time; failures pass through."""
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
        if waiting and result.shape[1:] != waiting[0][1].shape[1:]:
            yield from flush()  # a batch holds windows of one shape (CNN14's whole clips)
        waiting.append((i, result))
        if sum(len(w) for _, w in waiting) >= batch_size:
            yield from flush()
    if waiting:
        yield from flush()


def pool(windows: np.ndarray, pooling: list[str]) -> np.ndarray:
    """(len(pooling) x dim,) of a clip's (windows, dim) embeddings."""
    return np.concatenate([POOLING[stat](windows, axis=0) for stat in pooling])


def weights_identity(name: str, params: dict, folder: Path) -> str:
    """The encoder's weights in ``folder`` checked against ``weights.<name>``, and what
    identifies them (a checkpoint's SHA-256; a Hub repository's files' digests, hashed)."""
    if encoder(name).hub:
        from soundclf.features.hub import verify_repository
        return verify_repository(name, params["weights"][name], folder)
    return verify_checkpoint(folder / CHECKPOINT, params["weights"][name]["sha256"], name)


def encoder_windows(params: dict, device: torch.device, folder: Path, weights: str) -> Recipe:
    """The recipe of ``embeddings.encoder`` (one encoder: a stage's, or a trained model's
    settings) with the ``embeddings`` section and the weights in ``folder``, whose identity
    is ``weights`` (:func:`weights_identity`)."""
    enc = encoder(params["embeddings"]["encoder"])
    return enc.windows(params, weights, device.type, folder)


def network(recipe: Recipe, folder: Path, device: torch.device) -> Embedder:
    """What embeds the recipe's windows: its encoder with the weights in ``folder``."""
    return encoder(recipe.encoder).embedder(folder, recipe, device)


def write_embeddings(dataset: str, encoder_name: str, raw_dir: Path, weights: Path,
                     params: dict, out: Path, cache_dir: Path) -> list[str]:
    """The whole stage for one encoder; returns the filenames left out
    (``features.on_error: skip``)."""
    section = params["embeddings"]
    encoder(encoder_name)
    device = torch_device(section["device"], "embeddings.device")
    identity = weights_identity(encoder_name, params, weights)
    one = {**params, "embeddings": {**section, "encoder": encoder_name}}
    recipe = encoder_windows(one, device, weights, identity)
    net = network(recipe, weights, device)
    done = compute_dataset(
        dataset, raw_dir, recipe, cache_dir, params["features"],
        then=lambda results: embed(results, net, section["batch_size"]),
        params=params)
    values = np.stack([pool(w, section["pooling"]) for w in done.values()])
    save_inputs(out, done.filenames(), values.astype(np.float32))
    return done.skipped()
