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


def write_calibrated_clap(folder: Path, clips: dict[str, list[Path]], seed: int = 0) -> None:
    """A tiny CLAP (:func:`write_tiny_clap`) whose zero-shot tells ``clips``' classes apart.

    Random weights give every clip about the same audio embedding, and the zero-shot
    model then one class for every clip, which the pipeline refuses as a collapsed model
    (soundclf.evaluation.scores). So the last layer of the text projection is set, by
    least squares, to map each class's prompt onto the mean audio embedding of that
    class's ``clips`` (label -> clips: give training clips, not the ones scored), what
    contrastive training would move it towards; everything else keeps its random weights.
    The audio embeddings are the pipeline's own (soundclf.features.embeddings).
    """
    from transformers import AutoTokenizer

    from soundclf.data.audio import load_clip
    from soundclf.features.embeddings import embed, encoder_windows, network, pool
    from soundclf.features.hub import verify_repository
    from soundclf.models import zeroshot

    write_tiny_clap(folder, seed)
    cpu = torch.device("cpu")
    params = {"embeddings": {"encoder": "clap", "hop": 1.0, "pooling": ["mean"]},
              "weights": {"clap": {"sha256": None}}}
    recipe = encoder_windows(params, cpu, folder,
                             verify_repository("clap", params["weights"]["clap"], folder))
    net = network(recipe, folder, cpu)
    labels = sorted(clips)
    targets = []
    for label in labels:
        windows = ((i, recipe.compute([load_clip(p, recipe)])[0])
                   for i, p in enumerate(clips[label]))
        audio = np.stack([pool(w, ["mean"]) for _, w in embed(windows, net, 8)])
        audio /= np.linalg.norm(audio, axis=1, keepdims=True)
        targets.append(audio.mean(axis=0))
    model = transformers.ClapModel.from_pretrained(folder).eval()
    tokens = AutoTokenizer.from_pretrained(folder)(
        [zeroshot.prompt(label) for label in labels], padding=True, return_tensors="pt")
    projection = model.text_projection
    with torch.no_grad():
        pooled = model.text_model(**tokens).pooler_output
        hidden = projection.activation(projection.linear1(pooled))
        inputs = torch.cat([hidden, torch.ones(len(labels), 1)], dim=1)
        solved = torch.linalg.pinv(inputs) @ torch.from_numpy(np.stack(targets)).float()
        projection.linear2.weight.copy_(solved[:-1].T)
        projection.linear2.bias.copy_(solved[-1])
    model.save_pretrained(folder)
