"""What the fastai models share (nn.py, cnn.py): a scikit-learn classifier around a fastai
``Learner``, batches read from tensors, one-cycle training with early stopping on a
carved set, a NaN guard, dvclive curves. Not a model family: it registers no model.

A subclass names its params section (``section``, for messages), builds its network
(``network``), turns input rows into the network's inputs (``inputs``) and may add
training callbacks (``callbacks``, e.g. augmentation); its constructor takes its params
and at least ``epochs``, ``lr``, ``batch_size``, ``wd``, ``class_weights``, ``grad_clip``,
``early_stopping``, ``early_stopping_valid`` and ``seed``.

As originally run, the per-epoch validation figures are those of the validation part
(``watch``), which only watches training. With ``early_stopping`` (a patience in epochs),
training instead watches a validation set carved from the training part
(``early_stopping_valid``, stratified by class, recordings of one ``src_file`` kept
together), stops when its loss has not improved for that many epochs and restores the best
epoch's weights; the validation part stays unseen until the final scoring.
"""

from __future__ import annotations

import contextlib
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from dvclive.fastai import DVCLiveCallback
from fastai.tabular.all import (
    Callback,
    CrossEntropyLossFlat,
    DataLoader,
    DataLoaders,
    EarlyStoppingCallback,
    GradientClip,
    Learner,
    OptimWrapper,
    SaveModelCallback,
    accuracy,
    set_seed,
)
from fastai.torch_core import norm_bias_params
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_class_weight

from soundclf import memory
from soundclf.evaluation.folds import class_folds
from soundclf.evaluation.probabilities import TrainingError


class NaNGuard(Callback):
    """Stop training with an error as soon as the loss is NaN or infinite."""

    order = 100

    def __init__(self, section: str, hint: str = ""):
        self.section, self.hint = section, hint

    def after_loss(self) -> None:
        if not torch.isfinite(self.learn.loss).all():
            raise TrainingError(
                f"loss became {self.learn.loss.item()} in epoch {self.epoch + 1}; "
                f"lower {self.section}.lr{self.hint}"
            )


class ReturnMemory(Callback):
    """Hand the heap's free pages back to the system after every epoch (soundclf.memory:
    without it, glibc's heap grows by the batches' fragments epoch after epoch)."""

    def after_epoch(self) -> None:
        memory.release(collect=False)


class ValidateLast(Callback):
    """Watch nothing before the last epoch: when no curves are logged and nothing stops
    early, the last epoch's figures are the only ones kept (``fit_info_``), and watching
    the others costs a forward pass over the set each epoch. Those epochs record None.
    The watched loader is still iterated, with no rows, so the random streams, and so the
    trained model, are the same as when every epoch is watched."""

    def before_validate(self) -> None:
        self.rows = None
        if self.epoch < self.n_epoch - 1:
            self.rows, self.dl.n = self.dl.n, 0

    def after_validate(self) -> None:
        if self.rows is not None:
            self.dl.n = self.rows


class RestoreBest(SaveModelCallback):
    """Keep the weights of the epoch with the lowest validation loss and restore them.

    A subclass only for its attribute name: DVCLiveCallback would log a callback called
    ``save_model`` as a DVC artifact.
    """


def early_stopping_rows(labels, groups, fraction: float, seed: int,
                        section: str = "nn.training") -> np.ndarray:
    """Positions of a stratified validation set for early stopping among training clips.

    Clips cut from one recording (``groups``: ``src_file``, ESC-50) stay on one side, or it
    would leak; a class with a single recording stays in training (soundclf.evaluation.folds).
    """
    n_splits = max(2, round(1 / fraction))
    folds = class_folds(labels, groups, n_splits, seed, keep_below=2,
                        param=f"{section}.early_stopping_valid {fraction} "
                              f"(1 fold in {n_splits})",
                        where="the training part")
    return folds[0][1]


class Rows:
    """Training or watched rows for fastai's DataLoader: ``(*inputs, class)`` per item.

    Tensors, not fastai's TabularPandas: that indexes a 2,474-column pandas frame for every
    batch, which costs several times the network's own arithmetic.
    """

    def __init__(self, inputs: tuple[np.ndarray, ...], targets: np.ndarray, rows: np.ndarray):
        self.rows = rows  # positions in the table given to FastaiClassifier.learner
        self.inputs = tuple(torch.as_tensor(a[rows]) for a in inputs)
        self.y = torch.as_tensor(targets[rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple:
        return (*(a[i] for a in self.inputs), self.y[i])


# fastai's default optimizer, Adam with decoupled weight decay (0.01 unless ``wd`` says)
# and none on biases and batch norm, run by PyTorch's fused AdamW kernel. The same update,
# computed in one pass over all parameters instead of a dozen tensor operations per
# parameter in Python: fastai's took 40 % of a 5-layer MLP's training time (2,474 inputs).
FUSED_ADAM = partial(OptimWrapper, opt=partial(torch.optim.AdamW, fused=True, betas=(0.9, 0.99),
                                               eps=1e-5))
FASTAI_WD = 0.01


def decay_groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Learner splitter: the parameters weight decay applies to, then biases and batch norm."""
    exempt = {id(p) for p in norm_bias_params(model, True)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [[p for p in params if id(p) not in exempt], [p for p in params if id(p) in exempt]]


class FastaiClassifier(ClassifierMixin, BaseEstimator):
    """A fastai network trained one-cycle, as a scikit-learn classifier.

    The fitted estimator keeps only the torch model (on the CPU), so it pickles small;
    ``decision_function`` gives the logits. ``fit_info_`` holds the kept epoch's
    ``valid_loss`` and, with early stopping, ``best_epoch`` (counted from 1) and
    ``epochs_run``.
    """

    section = "nn.training"  # the params section named in messages
    nan_hint = ""  # what else to try when the loss becomes NaN

    def network(self, x: np.ndarray, n_classes: int) -> torch.nn.Module:
        raise NotImplementedError

    def inputs(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """The network's inputs for rows ``x`` (after ``prepare``)."""
        raise NotImplementedError

    def prepare(self, x: np.ndarray, trained: np.ndarray) -> None:
        """Fit what ``inputs`` needs from the rows trained on (a standardization, say)."""

    def callbacks(self) -> list[Callback]:
        """Extra callbacks for training (augmentation)."""
        return []

    def torch_device(self) -> torch.device:
        """Where it trains (the fitted model is kept on the CPU)."""
        return torch.device("cpu")

    def learner(self, X, y, groups=None, watch=None) -> Learner:
        """The fastai learner ``fit`` trains: on ``X, y``, reporting ``watch`` each epoch.

        With early stopping it reports a part carved from ``X`` instead (``groups``: the
        recording of each clip, kept on one side), which it then does not train on.
        """
        device = self.torch_device()  # an unusable one is refused before any work
        set_seed(self.seed, reproducible=True)
        x = np.asarray(X, dtype=np.float32)
        labels = np.asarray(y)
        if self.early_stopping:
            watched = early_stopping_rows(labels, groups, self.early_stopping_valid,
                                          self.seed, self.section)
        else:
            if watch is not None:
                x = np.concatenate([x, np.asarray(watch[0], dtype=np.float32)])
                labels = np.concatenate([labels, np.asarray(watch[1])])
            watched = np.arange(len(y), len(x))
        trained = np.setdiff1d(np.arange(len(x)), watched)
        batch_size = min(self.batch_size, len(trained))
        if batch_size < self.batch_size:  # fastai drops the incomplete batch: none left
            print(f"{self.section}.batch_size {self.batch_size} is more than the "
                  f"{len(trained)} training clips: training on batches of {batch_size}")
        # The vocabulary is every class of the table, watched ones too: a class seen only
        # there still has an output unit.
        vocab = np.unique(labels)
        targets = np.searchsorted(vocab, labels)
        self.prepare(x, trained)
        inputs = self.inputs(x)
        dls = DataLoaders(  # the DataLoaders move every batch to the device
            DataLoader(Rows(inputs, targets, trained), bs=batch_size, shuffle=True,
                       drop_last=True),
            DataLoader(Rows(inputs, targets, watched), bs=batch_size),
            device=device,
        )
        dls.vocab = list(vocab)
        weight = None  # unweighted cross-entropy, fastai's default for a category target
        if self.class_weights == "balanced":
            weight = torch.tensor(compute_class_weight(  # in vocab order, from the training
                "balanced", classes=vocab, y=labels[trained]), dtype=torch.float32)
        # one weight decay per group (decay_groups): biases and batch norm none. Training
        # must not pass wd to fit (it would set both groups) nor lr as a slice.
        wd = FASTAI_WD if self.wd is None else self.wd
        return Learner(dls, self.network(x, len(vocab)),
                       loss_func=CrossEntropyLossFlat(weight=weight), metrics=accuracy,
                       opt_func=FUSED_ADAM, splitter=decay_groups, wd=[wd, 0.0])

    def fit(self, X, y, groups=None, watch=None, live=None) -> FastaiClassifier:
        learn = self.learner(X, y, groups, watch)
        kept = self.train(learn, live)
        self.fit_info_ = {k: float(v) for k, v in kept.items()  # none watched: no loss
                          if k in ("valid_loss", "best_epoch", "epochs_run") and v is not None}
        self.classes_ = np.unique(np.asarray(y))
        vocab = list(learn.dls.vocab)
        self.columns_ = [vocab.index(c) for c in self.classes_]  # vocab order -> classes_
        self.model_ = learn.model.cpu().eval()
        del learn  # its data, optimizer state and batches: freed, then handed back
        memory.release()
        return self

    def train(self, learn: Learner, live=None) -> dict[str, float]:
        """One-cycle training; the figures of the epoch whose weights the model keeps.

        That is the last epoch, or with early stopping the best one. With ``live``, every
        epoch is printed and logged by dvclive; without, training is quiet, and without
        early stopping only the last epoch is validated (:class:`ValidateLast`).
        """
        learn.recorder.train_metrics = True  # training accuracy per epoch, beside validation
        callbacks = [NaNGuard(self.section, self.nan_hint), ReturnMemory(), *self.callbacks()]
        if live:
            callbacks.append(DVCLiveCallback(live=live))
        elif not self.early_stopping:
            callbacks.append(ValidateLast())
        if self.grad_clip:
            callbacks.append(GradientClip(self.grad_clip))
        quiet = learn.no_logging() if live is None else contextlib.nullcontext()
        with tempfile.TemporaryDirectory() as checkpoints, learn.no_bar(), quiet:
            if self.early_stopping:
                learn.path, learn.model_dir = Path(checkpoints), "."
                callbacks += [EarlyStoppingCallback(patience=self.early_stopping),
                              RestoreBest(fname="best")]
            learn.fit_one_cycle(self.epochs, self.lr, cbs=callbacks)
            learn.path = Path(".")
        # names end with "time", values do not: zip stops at the shorter
        epochs = [dict(zip(learn.recorder.metric_names[1:], values, strict=False))
                  for values in learn.recorder.values]
        if not self.early_stopping:
            return epochs[-1]
        best = int(np.argmin([e["valid_loss"] for e in epochs]))
        return {**epochs[best], "best_epoch": best + 1, "epochs_run": len(epochs)}

    def fit_memory(self, X, y) -> int:
        """About how many bytes ``fit(X, y)`` takes beyond its inputs: the rows' copies
        (float32, the network's inputs, the batches' source tensors), the network with its
        gradients, optimizer state and best-epoch copy, and three times the activations
        of one batch (kept for the backward pass, their gradients, augmented copies),
        measured by running one batch forward."""
        probe = clone(self)
        x = np.asarray(X[:self.batch_size], dtype=np.float32)
        probe.prepare(x, np.arange(len(x)))
        inputs = [torch.as_tensor(a) for a in probe.inputs(x)]
        network = probe.network(x, len(np.unique(np.asarray(y))))
        sizes = []
        hooks = [m.register_forward_hook(lambda m, i, out: sizes.append(out.nbytes))
                 for m in network.modules() if not list(m.children())]
        with torch.no_grad():
            network.eval()(*inputs)
        for hook in hooks:
            hook.remove()
        per_row = x[0].nbytes + sum(a[0].nbytes for a in inputs)
        weights = sum(p.nbytes for p in network.parameters())
        return 2 * len(X) * per_row + 5 * weights + 3 * sum(sizes) * self.batch_size // len(x)

    def decision_function(self, X) -> np.ndarray:
        inputs = self.inputs(np.asarray(X, dtype=np.float32))
        logits = []
        with torch.no_grad():
            for start in range(0, len(inputs[0]), 256):
                logits.append(self.model_(*(torch.as_tensor(a[start:start + 256])
                                            for a in inputs)))
        return torch.cat(logits)[:, self.columns_].numpy()

    def predict_proba(self, X) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision_function(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]
