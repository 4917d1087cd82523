"""CLAP's zero-shot classifier (the ``zeroshot`` section): a model that trains on nothing.

Each class gets a text prompt, its name as words in ``zeroshot.template`` (LAION's
"This is a sound of {}." by default: ``chirping_birds`` -> "This is a sound of chirping
birds."), embedded by CLAP's text tower (``ClapModel.get_text_features``: projected into
the space the audio embeddings share, unit length). A clip's score for a class is the
cosine similarity of its CLAP audio embedding (stage `embeddings` with clap: the mean over
its windows, or the max when ``embeddings.pooling`` has no mean) and the prompt's; its
probabilities the softmax of the model's own audio logit scale
(``exp(ClapModel.logit_scale_a)``) times the similarities, as ``ClapModel`` scores
audio against text. "Fitting" it embeds the prompts of the classes it is shown and learns
nothing from the clips, so its out-of-fold probabilities (what the ensemble learns from)
are just its probabilities. Its stage runs for ``zeroshot.datasets`` (clap in
``embeddings.encoders``); ``predict --labels`` classifies into typed labels with no
training at all.

The text tower is read from CLAP's weights folder (stage `weights`), which the stage
passes as ``--weights`` (soundclf.evaluation.train).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from soundclf.models import Model

TEMPLATE = "This is a sound of {}."  # LAION's


def prompt(label: str, template: str = TEMPLATE) -> str:
    """A class's prompt: its name as words (``_`` and runs of spaces as one space)."""
    return template.format(" ".join(str(label).replace("_", " ").split()))


@functools.cache
def text_embeddings(folder: str, prompts: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """Each prompt's unit-length CLAP text embedding, (prompts, dim), and the model's audio
    logit scale, ``exp(logit_scale_a)``; the model loaded once per process."""
    import torch
    from transformers import AutoTokenizer, ClapModel

    model = ClapModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        tokens = tokenizer(list(prompts), padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens).pooler_output.float().numpy()
        scale = float(model.logit_scale_a.exp())
    return text / np.linalg.norm(text, axis=1, keepdims=True), scale


class ZeroShot(ClassifierMixin, BaseEstimator):
    """Cosine similarity of CLAP audio embeddings (X: a clip's pooled statistics, in
    ``pooling`` order) and each class's prompt (the module's text)."""

    def __init__(self, weights: str | None = None, template: str = TEMPLATE,
                 pooling: tuple[str, ...] = ("mean",)):
        self.weights = weights
        self.template = template
        self.pooling = pooling

    def fit(self, X, y, classes=None) -> ZeroShot:
        """Embed the prompts of ``classes`` (default: those of ``y``, sorted); X is unused."""
        if self.weights is None:
            raise ValueError("the zero-shot model needs CLAP's weights folder (its stage's "
                             "--weights)")
        self.classes_ = np.unique(y) if classes is None else np.asarray(classes)
        self.prompts_ = [prompt(c, self.template) for c in self.classes_]
        self.text_, self.logit_scale_ = text_embeddings(str(self.weights), tuple(self.prompts_))
        return self

    def fit_memory(self, X, y) -> int:
        """The CLAP model it loads, about its files' size."""
        return sum(p.stat().st_size for p in Path(self.weights).rglob("*") if p.is_file()) \
            if self.weights else 0

    def audio(self, X) -> np.ndarray:
        """Each clip's unit-length audio embedding: its mean (else max) over windows."""
        stat = "mean" if "mean" in self.pooling else "max"
        dim = self.text_.shape[1]
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != dim * len(self.pooling):
            raise ValueError(f"expected {dim} values per pooling statistic "
                             f"({', '.join(self.pooling)}), got {X.shape[1]} in all")
        start = dim * list(self.pooling).index(stat)
        part = X[:, start:start + dim]
        return part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)

    def similarity(self, X) -> np.ndarray:
        """(clips, classes) cosine similarities."""
        return self.audio(X) @ self.text_.T

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.logit_scale_ * self.similarity(X), axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def build(params: dict, features: list[str] | None = None, weights: str | None = None
          ) -> ZeroShot:
    """The zero-shot classifier of ``zeroshot.template`` on embeddings pooled as
    ``embeddings.pooling`` says, its text tower in ``weights`` (CLAP's folder)."""
    pooling = tuple(params["embeddings"]["pooling"])
    if set(pooling) <= {"std"}:
        raise ValueError("the zero-shot model needs the mean or max of the CLAP embeddings: "
                         "add mean to 'embeddings.pooling'")
    return ZeroShot(None if weights is None else str(weights),
                    params["zeroshot"]["template"], pooling)


MODELS = [Model("zeroshot-clap", "Zero-shot CLAP",
                params=("zeroshot.template", "embeddings.pooling"), build=build,
                inputs="embeddings", encoder="clap", reads_weights=True,
                datasets=lambda params: params["zeroshot"]["datasets"],
                architecture=lambda params: repr(params["zeroshot"]["template"]))]
