"""Stages `train-nn-2layer` and `train-nn-5layer`: a fastai tabular MLP, one-cycle training.

    python -m stages.train_nn LAYERS_KEY NORMALIZED_PARQUET MODEL_PKL METRICS_JSON
                              PREDICTIONS_CSV TRAINING_DIR

LAYERS_KEY names the architecture in params.yaml (``nn.layers`` or ``nn_deep.layers``);
every other setting comes from the `nn` section. The target is always categorical
(``CategoryBlock``): fastai would otherwise make an integer label a one-output regression,
which is how the original FreeSound run collapsed to a single class. Per-epoch training
and validation loss and accuracy are logged by dvclive's ``DVCLiveCallback`` into
TRAINING_DIR. One model is trained per evaluation round (see stages.evaluate), with the
values ``tune.nn`` chooses in it if set (stages.tune); the curves and MODEL_PKL are the
primary round's.

As originally run, the per-epoch validation figures are those of the validation split,
which only watches training. With ``nn.early_stopping`` (a patience in epochs), training
instead watches a validation set carved from the training split (``early_stopping_valid``,
stratified by class, recordings of one ``src_file`` kept together), stops when its loss
has not improved for that many epochs and restores the best epoch's weights; the
validation split stays unseen until the final scoring.
"""

from __future__ import annotations

import argparse
import contextlib
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
    EarlyStoppingCallback,
    GradientClip,
    Learner,
    SaveModelCallback,
    TabularDataLoaders,
    accuracy,
    set_seed,
    tabular_config,
    tabular_learner,
)
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight

from stages import tune
from stages.evaluate import RoundResult, Split, TrainingError, headline, train_rounds
from stages.folds import class_folds, recording_groups
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


LAYERS_KEYS = {"nn-2layer": "nn.layers", "nn-5layer": "nn_deep.layers"}  # stage -> params


def nn_settings(params: dict, layers_key: str) -> dict:
    """The training settings: the `nn` section with ``layers`` taken from LAYERS_KEY."""
    return {**params["nn"], "layers": get(params, layers_key), "seed": params["seed"]}


class RestoreBest(SaveModelCallback):
    """Keep the weights of the epoch with the lowest validation loss and restore them.

    A subclass only for its attribute name: DVCLiveCallback would log a callback called
    ``save_model`` as a DVC artifact.
    """


def early_stopping_rows(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Positions in ``train`` of a stratified validation set for early stopping.

    Clips cut from one recording (``src_file``, ESC-50) stay on one side, or it would leak;
    a class with a single recording stays in training (stages.folds).
    """
    groups = recording_groups(train)
    n_splits = max(2, round(1 / fraction))
    folds = class_folds(train["label"], groups, n_splits, seed, keep_below=2,
                        param=f"nn.early_stopping_valid {fraction} (1 fold in {n_splits})",
                        where="the training part")
    return folds[0][1]


def make_learner(train_rows: pd.DataFrame, features: list[str], settings: dict,
                 watch: pd.DataFrame | None = None) -> Learner:
    """A tabular learner with a categorical target, training on ``train_rows``.

    The validation it reports each epoch is ``watch`` (the validation split, or none) or,
    with early stopping, a part carved from ``train_rows`` (which it then does not train on).
    """
    set_seed(settings["seed"], reproducible=True)
    if settings["early_stopping"]:
        table = train_rows.reset_index(drop=True)
        watched = early_stopping_rows(table, settings["early_stopping_valid"], settings["seed"])
    else:
        watch = train_rows.iloc[:0] if watch is None else watch
        table = pd.concat([train_rows, watch], ignore_index=True)
        watched = np.arange(len(train_rows), len(table))
    n_train = len(table) - len(watched)
    batch_size = min(settings["batch_size"], n_train)
    if batch_size < settings["batch_size"]:  # fastai drops the incomplete batch: none left
        print(f"nn.batch_size {settings['batch_size']} is more than the {n_train} training "
              f"clips: training on batches of {batch_size}")
    # `valid_idx`, not `splits`: from_df silently ignores `splits` and splits at random.
    # The vocabulary is every class of the table: fastai's default takes the training
    # rows' only, and a class seen only in the watched rows then has no output unit.
    dls = TabularDataLoaders.from_df(
        table[[*features, "label"]], cont_names=features, y_names="label",
        y_block=CategoryBlock(vocab=sorted(table["label"].unique())), valid_idx=list(watched),
        bs=batch_size, procs=[], num_workers=0,
    )
    loss_func = None  # fastai's default: unweighted cross-entropy
    if settings["class_weights"] == "balanced":
        weights = compute_class_weight(  # in vocab order, from the labels trained on
            "balanced", classes=np.asarray(list(dls.vocab)),
            y=table["label"].drop(index=watched).to_numpy(),
        )
        loss_func = CrossEntropyLossFlat(weight=torch.tensor(weights, dtype=torch.float32))
    return tabular_learner(
        dls, layers=settings["layers"], metrics=accuracy, wd=settings["wd"],
        loss_func=loss_func,
        config=tabular_config(ps=settings["ps"], embed_p=settings["embed_p"]),
    )


def split_learner(split: Split, settings: dict) -> Learner:
    """A learner on one round: it trains on the training part and watches the validation."""
    return make_learner(split.table[~split.is_valid], split.features, settings,
                        watch=split.table[split.is_valid])


def train(learn: Learner, settings: dict, live: Live | None = None) -> dict[str, float]:
    """One-cycle training; returns the figures of the epoch whose weights the model keeps.

    That is the last epoch, or with early stopping the best one (``best_epoch``, counted
    from 1, and ``epochs_run`` are added). With ``live``, every epoch is printed and
    logged by dvclive; without, training is quiet.
    """
    learn.recorder.train_metrics = True  # training accuracy per epoch, beside validation
    callbacks = [NaNGuard()] + ([DVCLiveCallback(live=live)] if live else [])
    if settings["grad_clip"]:
        callbacks.append(GradientClip(settings["grad_clip"]))
    quiet = learn.no_logging() if live is None else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as checkpoints, learn.no_bar(), quiet:
        if settings["early_stopping"]:
            learn.path, learn.model_dir = Path(checkpoints), "."
            callbacks += [EarlyStoppingCallback(patience=settings["early_stopping"]),
                          RestoreBest(fname="best")]
        learn.fit_one_cycle(settings["epochs"], settings["lr"], cbs=callbacks)
        learn.path = Path(".")
    # read now: get_preds appends to recorder.values (names end with "time", values do not)
    epochs = [dict(zip(learn.recorder.metric_names[1:], values, strict=False))
              for values in learn.recorder.values]
    if not settings["early_stopping"]:
        return epochs[-1]
    best = int(np.argmin([e["valid_loss"] for e in epochs]))
    return {**epochs[best], "best_epoch": best + 1, "epochs_run": len(epochs)}


def predict(learn: Learner, rows: pd.DataFrame) -> np.ndarray:
    """Class names predicted for ``rows`` (a table with the feature columns), in order."""
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(rows))
    return np.asarray(learn.dls.vocab)[probs.argmax(dim=1).numpy()]


def fit_predict(settings: dict, split: Split, live: Live | None = None
                ) -> tuple[Learner, RoundResult]:
    """Train on one round and predict its validation clips; figures of the kept epoch."""
    learn = split_learner(split, settings)
    kept = train(learn, settings, live)
    extra = {k: float(v) for k, v in kept.items()
             if k in ("valid_loss", "best_epoch", "epochs_run")}
    return learn, RoundResult(split, predict(learn, split.table[split.is_valid]), extra)


class TabularNN(ClassifierMixin, BaseEstimator):
    """This module's MLP and training as a scikit-learn classifier (for the ensemble).

    ``fit(X, y, groups=None)`` trains as the NN stages do (``groups``: the recordings kept
    together by early stopping's carved set); the fitted estimator keeps only the torch
    model, so it pickles small. ``decision_function`` gives the logits.
    """

    def __init__(self, settings: dict | None = None):
        self.settings = settings

    def fit(self, X, y, groups=None) -> TabularNN:
        features = [f"x{i}" for i in range(X.shape[1])]
        rows = pd.DataFrame(np.asarray(X, dtype=np.float32), columns=features)
        rows["label"] = np.asarray(y)
        if groups is not None:
            rows["src_file"] = np.asarray(groups)
        learn = make_learner(rows, features, self.settings)
        train(learn, self.settings)
        self.classes_ = np.unique(rows["label"])
        vocab = list(learn.dls.vocab)
        self.columns_ = [vocab.index(c) for c in self.classes_]  # vocab order -> classes_
        self.model_ = learn.model.eval()
        return self

    def decision_function(self, X) -> np.ndarray:
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        with torch.no_grad():
            logits = self.model_(torch.zeros((len(x), 0), dtype=torch.long), x)
        return logits[:, self.columns_].numpy()

    def predict_proba(self, X) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision_function(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layers_key", choices=tuple(LAYERS_KEYS.values()))
    for name in ("normalized", "model", "metrics", "predictions", "training_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    name = f"NN {args.layers_key}"
    try:
        params = load_params()
        name = f"NN {get(params, args.layers_key)}"
        with tempfile.TemporaryDirectory() as live_dir, atomic_dir(args.training_dir) as out:

            def fit(split: Split, primary: bool) -> tuple[Learner, RoundResult]:
                tuned, chosen = tune.search("nn", params, split, lambda p, s: fit_predict(
                    nn_settings(p, args.layers_key), s)[1])
                settings = nn_settings(tuned, args.layers_key)
                if not primary:
                    learn, result = fit_predict(settings, split)
                else:  # the primary round: its curves are logged, its model kept
                    with Live(dir=live_dir, dvcyaml=None, save_dvc_exp=False) as live:
                        learn, result = fit_predict(settings, split, live)
                    shutil.copytree(Path(live_dir) / "plots" / "metrics", out,
                                    dirs_exist_ok=True)
                result.extra.update(chosen)
                return learn, result

            learn, metrics = train_rounds(name, args.normalized, fit, args.metrics,
                                          args.predictions)
    except (ParamError, TrainingError) as exc:
        sys.exit(f"train {name}: {exc}")
    write_with(args.model, lambda tmp: learn.export(tmp.absolute()))
    print(f"train {name}: {headline(metrics)}")


if __name__ == "__main__":
    main()
