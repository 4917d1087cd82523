"""Tiny copies of the Hub repositories the pipeline reads (CLAP, AST), built offline.

Each is a folder laid out as the real repository is (``config.json``, ``model.safetensors``,
the feature extractor's (and CLAP's tokenizer's) files), written by ``transformers``' own
``save_pretrained`` from the real classes in tiny configurations with seeded random
weights: the stages read them as they read the real ones, served as a local copy
(``weights.<encoder>.url``). CLAP's tokenizer is a RoBERTa byte-level BPE of single
characters and no merges, written here (the real one is a 50,265-token vocabulary).
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch
import transformers

from soundclf.features.hub import file_digests


def tiny_tokenizer() -> transformers.RobertaTokenizer:
    chars = string.ascii_letters + string.digits + ".,'-"
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *chars,
                                         *("\u0120" + c for c in chars)])}
    return transformers.RobertaTokenizer(vocab=vocab, merges=[])


def write_tiny_clap(folder: Path, seed: int = 0) -> dict[str, str]:
    """An unfused CLAP (HTSAT audio tower of 2 stages of 1 block, 1-layer RoBERTa text
    tower, 8 projected values) with its processor; returns its files' SHA-256."""
    torch.manual_seed(seed)
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=len(tiny_tokenizer()), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=80),
        audio_config=dict(depths=[1, 1], num_attention_heads=[1, 1],
                          patch_embeds_hidden_size=8, hidden_size=16, window_size=8),
        projection_dim=8)
    transformers.ClapModel(config).eval().save_pretrained(folder)
    # the feature extractor's defaults, as laion/clap-htsat-unfused's (48 kHz, 10 s)
    transformers.ClapProcessor(feature_extractor=transformers.ClapFeatureExtractor(),
                               tokenizer=tiny_tokenizer()).save_pretrained(folder)
    return file_digests(folder)


def write_tiny_ast(folder: Path, seed: int = 0) -> dict[str, str]:
    """An AST of one 16-wide layer with an AudioSet-sized head, as the fine-tuned
    repository holds (``ASTForAudioClassification``), and its feature extractor (16 kHz,
    1,024 frames); returns its files' SHA-256."""
    torch.manual_seed(seed)
    config = transformers.ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, num_labels=527)
    transformers.ASTForAudioClassification(config).eval().save_pretrained(folder)
    transformers.ASTFeatureExtractor().save_pretrained(folder)
    return file_digests(folder)


WRITERS = {"clap": write_tiny_clap, "ast": write_tiny_ast}


def write_discerning_clap(folder: Path, clips: list[Path], labels: list[str],
                          seeds: range = range(20)) -> int:
    """A tiny CLAP (:func:`write_tiny_clap`) whose zero-shot predictions of ``clips`` with
    ``labels`` are not all one class; returns its seed.

    Random weights classify by chance, and most seeds give every clip the same class,
    which the pipeline refuses as a collapsed model (soundclf.evaluation.scores): the
    first seed that does not is taken, the choice made by the pipeline's own code.
    """
    import shutil

    from soundclf.data.audio import load_clip
    from soundclf.features.embeddings import embed, encoder_windows, network, pool
    from soundclf.features.hub import verify_repository
    from soundclf.models import zeroshot

    params = {"embeddings": {"encoder": "clap", "hop": 1.0, "pooling": ["mean"]},
              "weights": {"clap": {"sha256": None}}}
    for seed in seeds:
        shutil.rmtree(folder, ignore_errors=True)
        write_tiny_clap(folder, seed)
        cpu = torch.device("cpu")
        recipe = encoder_windows(params, cpu, folder,
                                 verify_repository("clap", params["weights"]["clap"], folder))
        net = network(recipe, folder, cpu)
        windows = ((i, recipe.compute([load_clip(p, recipe)])[0]) for i, p in enumerate(clips))
        X = np.stack([pool(w, ["mean"]) for _, w in embed(windows, net, 8)])
        model = zeroshot.build({"zeroshot": {"template": zeroshot.TEMPLATE},
                                "embeddings": {"pooling": ["mean"]}}, None, weights=folder)
        if len(set(model.fit(None, labels).predict(X))) > 1:
            return seed
    raise RuntimeError(f"no seed of {seeds} gives a tiny CLAP that tells the clips apart")
