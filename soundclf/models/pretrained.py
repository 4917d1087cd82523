"""A linear classifier on pretrained embeddings (the ``pretrained`` section), one model per
encoder: ``pretrained-<encoder>`` reads that encoder's embeddings (stage `embeddings`, its
settings the ``embeddings`` section) and its stage runs when the encoder is one of
``embeddings.encoders``.

Every other model learns what to listen for from the training clips alone. This one reads
what a network trained on large sound libraries hears in each clip (soundclf.features.encoders: by
default aisfx's, 768 values per 2.3 s window from its last two blocks, their mean and
maximum over the clip's windows), standardized on the training clips, through a
multinomial logistic regression (``C``: inverse L2 strength; ``class_weight``; lbfgs for up
to ``max_iter`` iterations, deterministic).
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from soundclf.models import Model
from soundclf.params import ENCODERS


def build(params: dict, features: list[str]) -> Pipeline:
    """The standardized logistic regression of the ``pretrained`` section, unfitted."""
    section = params["pretrained"]
    weights = None if section["class_weight"] == "none" else "balanced"
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=section["C"], max_iter=section["max_iter"], class_weight=weights))


def on_encoder(name: str):
    """Every dataset while encoder ``name`` is one of ``embeddings.encoders``, else none."""
    return lambda params: params["datasets"] if name in params["embeddings"]["encoders"] \
        else []


def architecture(name: str):
    """The encoder, and aisfx's blocks: e.g. ``aisfx [3, 4]``."""
    return lambda params: f"{name} {params['embeddings']['blocks']}" if name == "aisfx" \
        else name


MODELS = [Model(f"pretrained-{name}", "Pretrained embeddings + LogReg",
                params=("pretrained", "embeddings.blocks"),
                build=build, tune="pretrained", inputs="embeddings",
                architecture=architecture(name), datasets=on_encoder(name), encoder=name)
          for name in ENCODERS]
