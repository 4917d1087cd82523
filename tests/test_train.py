"""Model training: a categorical target whatever the label dtype, and the NaN guard."""

import json
import re
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from dvclive import Live
from fastai.tabular.all import Adam, Callback, DataLoader, GradientClip, trainable_params
from sklearn.preprocessing import StandardScaler

from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round, load_rounds, recording_groups
from soundclf.evaluation.scores import classification_metrics
from soundclf.evaluation.train import read_scaler
from soundclf.models import get
from soundclf.models.fastai_base import Rows, early_stopping_rows
from soundclf.table import InputsError
from tests.conftest import REPO, separable_table

PARAMS = {
    "seed": 42,
    "svc": {"C": 1.0, "max_iter": 1000, "dual": False, "class_weight": "none",
            "block_weights": "none"},
    "nn": {"layers": [32, 16],
           "training": {"epochs": 8, "lr": 0.01, "batch_size": 16, "ps": 0.0, "embed_p": 0.0,
                        "wd": None, "class_weights": "none", "grad_clip": None,
                        "early_stopping": None, "early_stopping_valid": 0.1}},
    "nn_deep": {"layers": [32, 16, 8]},
}


def make_svc(params, features):
    return get("svc").build(params, features)


def round_of(table, tmp_path) -> Round:
    path = tmp_path / "normalized.parquet"
    table.to_parquet(path)
    return load_rounds(path)[0]


def nn_learner(rnd, **overrides):
    """The NN of PARAMS (with ``overrides``) and the learner it trains on the round."""
    nn = get("nn-2layer").build(PARAMS, rnd.features).set_params(**overrides)
    return nn, nn.learner(*rnd.xy("train"), groups=recording_groups(rnd.rows("train")),
                          watch=rnd.xy("valid"))


def fit_nn(rnd, tmp_path, **overrides):
    nn, learn = nn_learner(rnd, **overrides)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        last = nn.train(learn, live)
    return learn, last


def test_the_optimizer_takes_fastais_adam_steps(tmp_path):
    """The learners train with PyTorch's fused AdamW set up as fastai's default Adam
    (betas 0.9 / 0.99, eps 1e-5, decoupled weight decay, none on biases and batch norm):
    the same weights as fastai's own Adam after the same batches, to float rounding. A
    large weight decay makes a decayed bias or batch-norm weight show."""
    rnd = round_of(separable_table(), tmp_path)
    _, learn = nn_learner(rnd, wd=0.5)
    _, reference = nn_learner(rnd, wd=0.5)  # the same network and batches ...
    reference.opt_func, reference.splitter, reference.wd = Adam, trainable_params, 0.5
    for trained in (learn, reference):  # ... trained by fastai's default optimizer
        with trained.no_bar(), trained.no_logging():
            trained.fit_one_cycle(4, 0.01)  # as the stages train: lr and momentum move
    assert learn.opt.opt.defaults["fused"] and type(reference.opt).__name__ == "Optimizer"
    decayed, exempt = learn.opt.hypers  # the two parameter groups, after training
    assert (decayed["wd"], exempt["wd"]) == (0.5, 0.0)
    assert decayed["lr"] == exempt["lr"] and decayed["mom"] == exempt["mom"]
    for (name, ours), theirs in zip(learn.model.named_parameters(),
                                    reference.model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def predict(learn, x):
    """Class names fastai's own inference (get_preds) predicts for the feature rows ``x``."""
    x = np.asarray(x, dtype=np.float32)
    rows = DataLoader(Rows((np.zeros((len(x), 0), dtype=np.int64), x),
                           np.zeros(len(x), dtype=int), np.arange(len(x))), bs=16)
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=rows)
    return np.asarray(learn.dls.vocab)[probs.argmax(dim=1).numpy()]


@pytest.mark.parametrize("label_dtype", ["str", "int"])
def test_nn_is_a_classifier_with_one_output_per_class(tmp_path, label_dtype):
    table = separable_table(n_classes=5)
    if label_dtype == "int":  # how the original FreeSound script encoded its labels
        table["label"] = table["label"].str.removeprefix("class_").astype(int)
    rnd = round_of(table, tmp_path)
    learn, last = fit_nn(rnd, tmp_path)
    assert learn.model.layers[-1][0].out_features == 5
    assert len(learn.dls.vocab) == 5
    x_valid, actual = rnd.xy("valid")
    predicted = predict(learn, x_valid)
    assert classification_metrics(actual, predicted)["accuracy"] > 0.8  # chance is 0.2
    assert set(last) >= {"train_loss", "valid_loss", "train_accuracy", "valid_accuracy"}
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "loss.tsv").is_file()


def test_nn_training_is_deterministic(tmp_path):
    rnd = round_of(separable_table(), tmp_path)
    runs = [fit_nn(rnd, tmp_path / str(k))[1] for k in range(2)]
    assert runs[0] == runs[1]


def test_the_fitted_estimator_predicts_as_fastai_does(tmp_path):
    """TabularNN.predict (the torch model alone, what is saved) agrees with fastai's own
    inference on the learner it trained."""
    rnd = round_of(separable_table(n_classes=4, seed=5), tmp_path)
    nn = get("nn-2layer").build(PARAMS, rnd.features)
    x_valid, _ = rnd.xy("valid")
    fitted = nn.fit(*rnd.xy("train"), watch=rnd.xy("valid"))
    _, learn = nn_learner(rnd)
    nn.train(learn)
    assert (fitted.predict(x_valid) == predict(learn, x_valid)).all()
    assert set(fitted.fit_info_) == {"valid_loss"}


def test_without_curves_only_the_last_epoch_is_watched_and_the_model_is_the_same(tmp_path):
    """Quiet training (no curves, no early stopping) watches the validation part in its
    last epoch only (ValidateLast); the model and the kept figures are bit for bit those of
    the same training with curves logged, which watches every epoch."""
    rnd = round_of(separable_table(n_classes=4, seed=5), tmp_path)
    quiet_nn, quiet = nn_learner(rnd)
    quiet_kept = quiet_nn.train(quiet)
    logged, logged_kept = fit_nn(rnd, tmp_path)
    column = quiet.recorder.metric_names[1:].index("valid_loss")
    assert [row[column] is None for row in quiet.recorder.values] == [True] * 7 + [False]
    assert all(row[column] is not None for row in logged.recorder.values)
    assert quiet_kept == logged_kept
    for a, b in zip(quiet.model.state_dict().values(), logged.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_nan_loss_fails_with_a_clear_message(tmp_path):
    rnd = round_of(separable_table(), tmp_path)
    with pytest.raises(TrainingError, match="loss became nan in epoch 1.*nn.training.lr"):
        fit_nn(rnd, tmp_path, lr=1e30)


def test_svc_on_separable_data(tmp_path):
    rnd = round_of(separable_table(), tmp_path)
    svc = make_svc(PARAMS, rnd.features).fit(*rnd.xy("train"))
    x_valid, y_valid = rnd.xy("valid")
    assert (svc.predict(x_valid) == y_valid).mean() > 0.9
    assert svc.random_state == 42 and svc.dual is False


def test_batch_larger_than_the_training_set_is_reduced(tmp_path, capsys):
    rnd = round_of(separable_table(n_per_class=10), tmp_path)  # 24 training clips
    learn, last = fit_nn(rnd, tmp_path, batch_size=64)
    assert learn.dls.train.bs == 24 and len(learn.dls.train) == 1
    assert "nn.training.batch_size 64 is more than the 24 training clips" in capsys.readouterr().out
    assert last["train_loss"] > 0


def grouped_table(n_per_class: int = 40, n_classes: int = 3) -> pd.DataFrame:
    """A normalized table with ESC-50's grouping: 4 clips cut from each recording."""
    table = separable_table(n_per_class=n_per_class, n_classes=n_classes, seed=3)
    table["src_file"] = [f"rec{i // 4}" for i in range(len(table))]
    return table


def test_early_stopping_watches_a_carved_set_and_restores_the_best_epoch(tmp_path):
    table = grouped_table()
    noisy = table.columns.str.startswith("stft_")
    rng = np.random.default_rng(0)
    table.loc[:, noisy] += rng.normal(0, 3.0, (len(table), noisy.sum())).astype(np.float32)
    rnd = round_of(table, tmp_path)
    learn, kept = fit_nn(rnd, tmp_path, epochs=40, lr=0.05, early_stopping=3,
                         early_stopping_valid=0.2, layers=[256, 128])
    watched = learn.dls.valid.dataset.rows  # positions in the training part
    trained = learn.dls.train.dataset.rows
    train = rnd.rows("train")
    assert len(watched) + len(trained) == len(train)  # the validation part unseen
    assert not set(train.iloc[watched]["src_file"]) & set(train.iloc[trained]["src_file"])
    assert set(train.iloc[watched]["label"]) == set(table["label"])
    assert kept["epochs_run"] < 40, "stopped early"
    assert kept["epochs_run"] - kept["best_epoch"] == 3
    losses = [values[2] for values in learn.recorder.values]  # [train loss, acc, valid loss..]
    assert len(losses) == kept["epochs_run"]
    assert kept["valid_loss"] == pytest.approx(min(losses), rel=1e-6)
    restored_loss = learn.validate()[0]  # the weights in the model now
    assert restored_loss == pytest.approx(kept["valid_loss"], rel=1e-4)


def test_gradient_clipping_bounds_the_gradient_norm(tmp_path):
    norms = []

    class Norm(Callback):
        order = GradientClip.order + 1

        def before_step(self):
            grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g) for g in grads])).item())

    rnd = round_of(separable_table(), tmp_path)
    nn, learn = nn_learner(rnd, grad_clip=0.01)
    learn.add_cb(Norm())
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        nn.train(learn, live)
    assert norms and max(norms) <= 0.01 * (1 + 1e-4)


def test_lr_find_script_saves_plot_and_suggestions(tmp_path, monkeypatch, capsys):
    separable_table(n_per_class=60).to_parquet(tmp_path / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["nn"]["training"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from scripts import lr_find  # in this process: fastai is imported already

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lr_find.py", "normalized.parquet", "lr/find.png"])
    lr_find.main()
    out = capsys.readouterr().out
    assert (tmp_path / "lr/find.png").read_bytes()[:4] == b"\x89PNG"
    found = json.loads((tmp_path / "lr/find.json").read_text())
    assert found["layers"] == [200, 100]
    assert set(found) == {"layers", "valley", "steep", "minimum"}
    assert all(1e-7 < found[k] < 10 for k in ("valley", "steep", "minimum"))
    assert "valley" in out


def test_early_stopping_set_on_too_few_clips_per_class_is_still_stratified(capsys):
    table = grouped_table(n_per_class=8, n_classes=4)  # 8 clips a class: 10 folds impossible
    rows = early_stopping_rows(table["label"], table["src_file"], 0.1, seed=42)
    assert ("nn.training.early_stopping_valid 0.1 (1 fold in 10): the training part has too "
            "few clips for 10 folds (8 recordings, at most 8 clips a class); using 8 folds"
            ) in capsys.readouterr().out
    watched = table.iloc[rows]
    assert 0 < len(watched) < len(table) / 2
    assert not set(watched["src_file"]) & set(table.drop(index=rows)["src_file"])


def test_svc_block_weights_give_every_feature_block_a_total_variance_of_one(tmp_path):
    from soundclf.features.summary import SummaryFeatures, feature_names
    from soundclf.models.svc import BlockWeights

    names = feature_names(SummaryFeatures())
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(0, 1, (60, len(names))).astype(np.float32), columns=names)
    table.insert(0, "filename", [f"{i}.wav" for i in range(60)])
    table.insert(1, "label", ["a", "b", "c"] * 20)
    table.insert(2, "split", np.where(np.arange(60) % 5 == 0, "valid", "train"))
    table.loc[table["label"] == "a", "mel_mean_3"] += 3.0
    rnd = round_of(table, tmp_path)
    model = make_svc({**PARAMS, "svc": {**PARAMS["svc"], "block_weights": "equal"}},
                     rnd.features).fit(*rnd.xy("train"))
    weights, svc = model[0], model[-1]
    assert isinstance(weights, BlockWeights) and svc.C == 1.0
    x = weights.transform(rnd.xy("train")[0])
    blocks = np.array([n.split("_", 1)[0] for n in names])
    for block, size in (("stft", 2050), ("mel", 256), ("cqt", 168)):
        assert (weights.weights_[blocks == block] == 1 / np.sqrt(size)).all()
        assert x[:, blocks == block].var(axis=0).sum() == pytest.approx(1, rel=0.1)
    plain = make_svc(PARAMS, rnd.features)
    assert isinstance(plain, type(svc))  # block_weights: none is the LinearSVC alone


def real_shaped(n_clips: int = 150, n_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """Fewer clips than the 2,474 features, overlapping classes (not separable), blocks of
    correlated columns: a standardized table shaped like real ESC-10 features."""
    from soundclf.features.summary import SummaryFeatures, feature_names

    names = feature_names(SummaryFeatures())
    rng = np.random.default_rng(seed)
    labels = np.arange(n_clips) % n_classes
    centers = rng.normal(0, 0.35, (n_classes, 40))
    latent = centers[labels] + rng.normal(0, 1, (n_clips, 40))
    x = latent @ rng.normal(0, 1, (40, len(names))) + rng.normal(0, 2, (n_clips, len(names)))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    table = pd.DataFrame(x.astype(np.float32), columns=names)
    table.insert(0, "filename", [f"{i}.wav" for i in range(n_clips)])
    table.insert(1, "label", [f"class_{k}" for k in labels])
    table.insert(2, "split", np.where(np.arange(n_clips) // n_classes % 5 == 0, "valid", "train"))
    return table


def test_default_svc_reaches_the_liblinear_optimum(tmp_path):
    """The default LinearSVC stops at its optimum, not at svc.max_iter: the same
    squared-hinge L2 objective (intercept included) solved by liblinear to 1e-10."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    params = {**PARAMS, "svc": yaml.safe_load((REPO / "params.yaml").read_text())["svc"]}
    rnd = round_of(real_shaped(), tmp_path)
    x_train, y_train = rnd.xy("train")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = make_svc(params, rnd.features).fit(x_train, y_train)
    weights, svc = model[0], model[-1]
    assert svc.n_iter_ < params["svc"]["max_iter"]
    exact = LinearSVC(C=params["svc"]["C"], dual=False, tol=1e-10, max_iter=100_000,
                      random_state=0).fit(weights.transform(x_train), y_train)
    scale = np.abs(exact.coef_).max()
    np.testing.assert_allclose(svc.coef_, exact.coef_, atol=1e-3 * scale)
    np.testing.assert_allclose(svc.intercept_, exact.intercept_, atol=1e-3 * scale)
    x_valid = rnd.xy("valid")[0]
    assert (model.predict(x_valid) == exact.predict(weights.transform(x_valid))).all()
    accuracy = (model.predict(x_valid) == rnd.xy("valid")[1]).mean()
    assert 0.2 < accuracy < 1.0  # overlapping classes: neither chance nor separable


def test_original_svc_path_is_the_original_linearsvc(tmp_path):
    """svc.block_weights: none, C: 1, dual: false, max_iter: 1000 is exactly
    LinearSVC(random_state=42, max_iter=1000, dual=False), as originally run."""
    from sklearn.svm import LinearSVC

    rnd = round_of(separable_table(n_classes=5, seed=1), tmp_path)
    model = make_svc(PARAMS, rnd.features).fit(*rnd.xy("train"))
    original = LinearSVC(random_state=42, max_iter=1000, dual=False).fit(*rnd.xy("train"))
    assert type(model) is LinearSVC and model.get_params() == original.get_params()
    np.testing.assert_array_equal(model.coef_, original.coef_)
    x_valid = rnd.xy("valid")[0]
    assert (model.predict(x_valid) == original.predict(x_valid)).all()


def test_a_missing_or_foreign_scaler_is_refused_naming_the_file(tmp_path):
    missing = tmp_path / "scaler.joblib"
    with pytest.raises(InputsError, match=f"{re.escape(str(missing))} is not normalize's"):
        read_scaler(missing)
    joblib.dump({"mean": 0}, missing)
    with pytest.raises(InputsError, match=f"{re.escape(str(missing))} holds a dict"):
        read_scaler(missing)
    joblib.dump(StandardScaler().fit([[0.0], [2.0]]), missing)
    assert read_scaler(missing).transform([[2.0]])[0, 0] == 1.0
