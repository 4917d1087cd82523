"""A linear classifier on pretrained embeddings (the ``pretrained`` section; input from the
`embeddings` stage, whose ``embeddings`` section names the encoder).

Every other model learns what to listen for from the training clips alone. This one reads
what a network trained on large sound libraries hears in each clip (soundclf.features.encoders: by
default 768 values per 2.3 s window from aisfx's last two blocks, their mean and maximum
over the clip's windows), standardized on the training clips, through a multinomial
logistic regression (``C``: inverse L2 strength; ``class_weight``; lbfgs for up to
``max_iter`` iterations, deterministic).
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from soundclf.models import Model


def build(params: dict, features: list[str]) -> Pipeline:
    """The standardized logistic regression of the ``pretrained`` section, unfitted."""
    section = params["pretrained"]
    weights = None if section["class_weight"] == "none" else "balanced"
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=section["C"], max_iter=section["max_iter"], class_weight=weights))


MODELS = [Model("pretrained", "Pretrained embeddings + LogReg",
                params=("pretrained", "embeddings.encoder", "embeddings.blocks"),
                build=build, tune="pretrained", inputs="embeddings",
                architecture=lambda params: "{encoder} {blocks}".format(**params["embeddings"]))]
