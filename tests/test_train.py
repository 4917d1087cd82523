"""Model training: a categorical target whatever the label dtype, and the NaN guard."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from dvclive import Live
from fastai.tabular.all import Callback, GradientClip

from stages.evaluate import Split, TrainingError, classification_metrics
from stages.train_nn import early_stopping_rows, nn_settings, predict, split_learner, train
from stages.train_svc import make_svc
from tests.conftest import REPO, separable_table

PARAMS = {
    "seed": 42,
    "svc": {"C": 1.0, "max_iter": 1000, "dual": False, "class_weight": "none",
            "block_weights": "none"},
    "nn": {"layers": [32, 16], "epochs": 8, "lr": 0.01, "batch_size": 16, "ps": 0.0,
           "embed_p": 0.0, "wd": None, "class_weights": "none", "grad_clip": None,
           "early_stopping": None, "early_stopping_valid": 0.1},
    "nn_deep": {"layers": [32, 16, 8]},
}


def split_of(table, tmp_path):
    path = tmp_path / "normalized.parquet"
    table.to_parquet(path)
    return Split.load(path)


def fit_nn(split, tmp_path, **overrides):
    settings = {**nn_settings(PARAMS, "nn.layers"), **overrides}
    learn = split_learner(split, settings)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        last = train(learn, settings, live)
    return learn, last


@pytest.mark.parametrize("label_dtype", ["str", "int"])
def test_nn_is_a_classifier_with_one_output_per_class(tmp_path, label_dtype):
    table = separable_table(n_classes=5)
    if label_dtype == "int":  # how the original FreeSound script encoded its labels
        table["label"] = table["label"].str.removeprefix("class_").astype(int)
    split = split_of(table, tmp_path)
    learn, last = fit_nn(split, tmp_path)
    assert learn.model.layers[-1][0].out_features == 5
    assert len(learn.dls.vocab) == 5
    predicted = predict(learn, split.table[split.is_valid])
    actual = split.table.loc[split.is_valid, "label"].to_numpy()
    assert classification_metrics(actual, predicted)["accuracy"] > 0.8  # chance is 0.2
    assert set(last) >= {"train_loss", "valid_loss", "train_accuracy", "valid_accuracy"}
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "loss.tsv").is_file()


def test_nn_training_is_deterministic(tmp_path):
    split = split_of(separable_table(), tmp_path)
    runs = [fit_nn(split, tmp_path / str(k))[1] for k in range(2)]
    assert runs[0] == runs[1]


def test_nan_loss_fails_with_a_clear_message(tmp_path):
    split = split_of(separable_table(), tmp_path)
    with pytest.raises(TrainingError, match="loss became nan in epoch 1.*nn.lr"):
        fit_nn(split, tmp_path, lr=1e30)


def test_svc_on_separable_data(tmp_path):
    split = split_of(separable_table(), tmp_path)
    svc = make_svc(PARAMS, split.features).fit(*split.xy("train"))
    x_valid, y_valid = split.xy("valid")
    assert (svc.predict(x_valid) == y_valid).mean() > 0.9
    assert svc.random_state == 42 and svc.dual is False


def test_batch_larger_than_the_training_set_is_reduced(tmp_path, capsys):
    split = split_of(separable_table(n_per_class=10), tmp_path)  # 24 training clips
    learn, last = fit_nn(split, tmp_path, batch_size=64)
    assert learn.dls.train.bs == 24 and len(learn.dls.train) == 1
    assert "nn.batch_size 64 is more than the 24 training clips" in capsys.readouterr().out
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
    split = split_of(table, tmp_path)
    learn, kept = fit_nn(split, tmp_path, epochs=40, lr=0.05, early_stopping=3,
                         early_stopping_valid=0.2, layers=[256, 128])
    watched = learn.dls.valid.items
    trained = learn.dls.train.items
    assert len(watched) + len(trained) == (~split.is_valid).sum()  # the test split unseen
    assert not set(table.loc[~split.is_valid].iloc[watched.index]["src_file"]) & set(
        table.loc[~split.is_valid].iloc[trained.index]["src_file"])
    assert set(table.loc[~split.is_valid].iloc[watched.index]["label"]) == set(table["label"])
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

    split = split_of(separable_table(), tmp_path)
    settings = {**nn_settings(PARAMS, "nn.layers"), "grad_clip": 0.01}
    learn = split_learner(split, settings)
    learn.add_cb(Norm())
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        train(learn, settings, live)
    assert norms and max(norms) <= 0.01 * (1 + 1e-4)


def test_lr_find_script_saves_plot_and_suggestions(tmp_path):
    separable_table(n_per_class=60).to_parquet(tmp_path / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["nn"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/lr_find.py"), "normalized.parquet",
         "lr/find.png"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lr/find.png").read_bytes()[:4] == b"\x89PNG"
    found = json.loads((tmp_path / "lr/find.json").read_text())
    assert found["layers"] == [200, 100]
    assert set(found) == {"layers", "valley", "steep", "minimum"}
    assert all(1e-7 < found[k] < 10 for k in ("valley", "steep", "minimum"))
    assert "valley" in result.stdout


def test_early_stopping_set_on_too_few_clips_per_class_is_still_stratified(capsys):
    table = grouped_table(n_per_class=8, n_classes=4)  # 8 clips a class: 10 folds impossible
    rows = early_stopping_rows(table, 0.1, seed=42)
    assert ("nn.early_stopping_valid 0.1 (1 fold in 10): the training part has too few clips "
            "for 10 folds (8 recordings, at most 8 clips a class); using 8 folds"
            ) in capsys.readouterr().out
    watched = table.iloc[rows]
    assert 0 < len(watched) < len(table) / 2
    assert not set(watched["src_file"]) & set(table.drop(index=rows)["src_file"])


def test_svc_block_weights_give_every_feature_block_a_total_variance_of_one(tmp_path):
    from stages.audio import FeatureParams, feature_names
    from stages.train_svc import BlockWeights

    names = feature_names(FeatureParams())
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(0, 1, (60, len(names))).astype(np.float32), columns=names)
    table.insert(0, "filename", [f"{i}.wav" for i in range(60)])
    table.insert(1, "label", ["a", "b", "c"] * 20)
    table.insert(2, "split", np.where(np.arange(60) % 5 == 0, "valid", "train"))
    table.loc[table["label"] == "a", "mel_mean_3"] += 3.0
    split = split_of(table, tmp_path)
    model = make_svc({**PARAMS, "svc": {**PARAMS["svc"], "block_weights": "equal"}},
                     split.features).fit(*split.xy("train"))
    weights, svc = model[0], model[-1]
    assert isinstance(weights, BlockWeights) and svc.C == 1.0
    x = weights.transform(split.xy("train")[0])
    blocks = np.array([n.split("_", 1)[0] for n in names])
    for block, size in (("stft", 2050), ("mel", 256), ("cqt", 168)):
        assert (weights.weights_[blocks == block] == 1 / np.sqrt(size)).all()
        assert x[:, blocks == block].var(axis=0).sum() == pytest.approx(1, rel=0.1)
    plain = make_svc(PARAMS, split.features)
    assert isinstance(plain, type(svc))  # block_weights: none is the LinearSVC alone


def real_shaped(n_clips: int = 150, n_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """Fewer clips than the 2,474 features, overlapping classes (not separable), blocks of
    correlated columns: a standardized table shaped like real ESC-10 features."""
    from stages.audio import FeatureParams, feature_names

    names = feature_names(FeatureParams())
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
    split = split_of(real_shaped(), tmp_path)
    x_train, y_train = split.xy("train")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = make_svc(params, split.features).fit(x_train, y_train)
    weights, svc = model[0], model[-1]
    assert svc.n_iter_ < params["svc"]["max_iter"]
    exact = LinearSVC(C=params["svc"]["C"], dual=False, tol=1e-10, max_iter=100_000,
                      random_state=0).fit(weights.transform(x_train), y_train)
    scale = np.abs(exact.coef_).max()
    np.testing.assert_allclose(svc.coef_, exact.coef_, atol=1e-3 * scale)
    np.testing.assert_allclose(svc.intercept_, exact.intercept_, atol=1e-3 * scale)
    x_valid = split.xy("valid")[0]
    assert (model.predict(x_valid) == exact.predict(weights.transform(x_valid))).all()
    accuracy = (model.predict(x_valid) == split.xy("valid")[1]).mean()
    assert 0.2 < accuracy < 1.0  # overlapping classes: neither chance nor separable


def test_original_svc_path_is_the_original_linearsvc(tmp_path):
    """svc.block_weights: none, C: 1, dual: false, max_iter: 1000 is exactly
    LinearSVC(random_state=42, max_iter=1000, dual=False), as originally run."""
    from sklearn.svm import LinearSVC

    split = split_of(separable_table(n_classes=5, seed=1), tmp_path)
    model = make_svc(PARAMS, split.features).fit(*split.xy("train"))
    original = LinearSVC(random_state=42, max_iter=1000, dual=False).fit(*split.xy("train"))
    assert type(model) is LinearSVC and model.get_params() == original.get_params()
    np.testing.assert_array_equal(model.coef_, original.coef_)
    x_valid = split.xy("valid")[0]
    assert (model.predict(x_valid) == original.predict(x_valid)).all()
