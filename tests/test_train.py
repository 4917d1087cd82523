"""Model training: a categorical target whatever the label dtype, and the NaN guard."""

import pytest
from dvclive import Live

from stages.evaluate import Split, TrainingError, classification_metrics
from stages.train_nn import make_learner, nn_settings, predict, train
from stages.train_svc import make_svc
from tests.conftest import separable_table

PARAMS = {
    "seed": 42,
    "svc": {"C": 1.0, "max_iter": 1000, "dual": False, "class_weight": "none"},
    "nn": {"layers": [32, 16], "epochs": 8, "lr": 0.01, "batch_size": 16, "ps": 0.0,
           "embed_p": 0.0, "wd": None, "class_weights": "none"},
    "nn_deep": {"layers": [32, 16, 8]},
}


def split_of(table, tmp_path):
    path = tmp_path / "normalized.parquet"
    table.to_parquet(path)
    return Split.load(path)


def fit_nn(split, tmp_path, **overrides):
    settings = {**nn_settings(PARAMS, "nn.layers"), **overrides}
    learn = make_learner(split, settings)
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
    svc = make_svc(PARAMS).fit(*split.xy("train"))
    x_valid, y_valid = split.xy("valid")
    assert (svc.predict(x_valid) == y_valid).mean() > 0.9
    assert svc.random_state == 42 and svc.dual is False


def test_batch_larger_than_the_training_set_is_reduced(tmp_path, capsys):
    split = split_of(separable_table(n_per_class=10), tmp_path)  # 24 training clips
    learn, last = fit_nn(split, tmp_path, batch_size=64)
    assert learn.dls.train.bs == 24 and len(learn.dls.train) == 1
    assert "nn.batch_size 64 is more than the 24 training clips" in capsys.readouterr().out
    assert last["train_loss"] > 0
