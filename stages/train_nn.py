"""Stages `train-nn-2layer` and `train-nn-5layer`: a fastai tabular MLP, one-cycle training.

    python -m stages.train_nn LAYERS_KEY NORMALIZED_PARQUET MODEL_PKL METRICS_JSON
                              PREDICTIONS_CSV TRAINING_DIR

LAYERS_KEY names the architecture in params.yaml (``nn.layers`` or ``nn_deep.layers``);
every other setting comes from the `nn` section. The target is always categorical
(``CategoryBlock``): fastai would otherwise make an integer label a one-output regression,
which is how the original FreeSound run collapsed to a single class. Per-epoch training
and validation loss and accuracy are logged by dvclive's ``DVCLiveCallback`` into
TRAINING_DIR.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live
from dvclive.fastai import DVCLiveCallback
from fastai.tabular.all import (
    Callback,
    CategoryBlock,
    CrossEntropyLossFlat,
    Learner,
    TabularDataLoaders,
    accuracy,
    set_seed,
    tabular_config,
    tabular_learner,
)
from sklearn.utils.class_weight import compute_class_weight

from stages.evaluate import Split, TrainingError, write_results
from stages.io import atomic_dir, write_with
from stages.params import ParamError, get, load_params


class NaNGuard(Callback):
    """Stop training with an error as soon as the loss is NaN or infinite."""

    order = 100

    def after_loss(self) -> None:
        if not torch.isfinite(self.learn.loss).all():
            raise TrainingError(
                f"loss became {self.learn.loss.item()} in epoch {self.epoch + 1}; "
                "lower nn.lr or use a scaler (normalize.scaler)"
            )


def nn_settings(params: dict, layers_key: str) -> dict:
    """The training settings: the `nn` section with ``layers`` taken from LAYERS_KEY."""
    return {**params["nn"], "layers": get(params, layers_key), "seed": params["seed"]}


def make_learner(split: Split, settings: dict) -> Learner:
    """A tabular learner over the train/valid split with a categorical target."""
    set_seed(settings["seed"], reproducible=True)
    n_train = int((~split.is_valid).sum())
    batch_size = min(settings["batch_size"], n_train)
    if batch_size < settings["batch_size"]:  # fastai drops the incomplete batch: none left
        print(f"nn.batch_size {settings['batch_size']} is more than the {n_train} training "
              f"clips: training on batches of {batch_size}")
    table = split.table[[*split.features, "label"]].reset_index(drop=True)
    # `valid_idx`, not `splits`: from_df silently ignores `splits` and splits at random.
    dls = TabularDataLoaders.from_df(
        table, cont_names=split.features, y_names="label", y_block=CategoryBlock(),
        valid_idx=list(np.flatnonzero(split.is_valid)), bs=batch_size,
        procs=[], num_workers=0,
    )
    loss_func = None  # fastai's default: unweighted cross-entropy
    if settings["class_weights"] == "balanced":
        weights = compute_class_weight(  # in vocab order, from the training labels
            "balanced", classes=np.asarray(list(dls.vocab)),
            y=split.table.loc[~split.is_valid, "label"].to_numpy(),
        )
        loss_func = CrossEntropyLossFlat(weight=torch.tensor(weights, dtype=torch.float32))
    return tabular_learner(
        dls, layers=settings["layers"], metrics=accuracy, wd=settings["wd"],
        loss_func=loss_func,
        config=tabular_config(ps=settings["ps"], embed_p=settings["embed_p"]),
    )


def train(learn: Learner, settings: dict, live: Live) -> dict[str, float]:
    """One-cycle training; returns the last epoch's losses and accuracies by name."""
    learn.recorder.train_metrics = True  # training accuracy per epoch, beside validation
    with learn.no_bar():
        learn.fit_one_cycle(
            settings["epochs"], settings["lr"],
            cbs=[NaNGuard(), DVCLiveCallback(live=live)],
        )
    # read now: get_preds appends to recorder.values (names end with "time", values do not)
    return dict(zip(learn.recorder.metric_names[1:], learn.recorder.values[-1], strict=False))


def predict(learn: Learner, rows: pd.DataFrame) -> np.ndarray:
    """Class names predicted for ``rows`` (a table with the feature columns), in order."""
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(rows))
    return np.asarray(learn.dls.vocab)[probs.argmax(dim=1).numpy()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layers_key", choices=("nn.layers", "nn_deep.layers"))
    for name in ("normalized", "model", "metrics", "predictions", "training_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    name = f"NN {args.layers_key}"
    try:
        settings = nn_settings(load_params(), args.layers_key)
        name = f"NN {settings['layers']}"
        split = Split.load(args.normalized)
        split.check_finite()
        learn = make_learner(split, settings)
        with tempfile.TemporaryDirectory() as live_dir, atomic_dir(args.training_dir) as out:
            with Live(dir=live_dir, dvcyaml=None, save_dvc_exp=False) as live:
                last_epoch = train(learn, settings, live)
            shutil.copytree(Path(live_dir) / "plots" / "metrics", out, dirs_exist_ok=True)
            predicted = predict(learn, split.table[split.is_valid])
            extra = {"valid_loss": float(last_epoch["valid_loss"])}
            metrics = write_results(
                name, split, predicted, args.metrics, args.predictions, extra=extra
            )
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train {name}: {exc}")
    write_with(args.model, lambda tmp: learn.export(tmp.absolute()))
    print(f"train {name}: accuracy {metrics['accuracy']:.4f} on {metrics['n_valid']} clips")


if __name__ == "__main__":
    main()
