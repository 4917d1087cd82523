"""Scores and the guard against a collapsed model."""

import json

import numpy as np
import pytest

from stages.evaluate import (
    Split,
    TrainingError,
    check_not_collapsed,
    classification_metrics,
    write_results,
)
from tests.conftest import separable_table


def test_metrics_on_a_known_example():
    actual = ["a", "a", "a", "a", "b", "b", "c", "c"]
    predicted = ["a", "a", "a", "b", "b", "b", "a", "c"]
    m = classification_metrics(actual, predicted)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    f1 = {"a": 2 * 3 / (2 * 3 + 1 + 1), "b": 2 * 2 / (2 * 2 + 1), "c": 2 / 3}
    assert m["f1_macro"] == pytest.approx(sum(f1.values()) / 3)
    assert m["f1_weighted"] == pytest.approx((4 * f1["a"] + 2 * f1["b"] + 2 * f1["c"]) / 8)


def test_single_predicted_class_fails():
    with pytest.raises(TrainingError, match="predicts the single class 'a'"):
        check_not_collapsed(["a", "a", "a"], n_classes=74, model="NN")
    check_not_collapsed(["a", "b", "a"], n_classes=74, model="NN")


def test_write_results_writes_json_and_predictions_or_nothing(tmp_path):
    table = separable_table()
    path = tmp_path / "n.parquet"
    table.to_parquet(path)
    split = Split.load(path)
    _, actual = split.xy("valid")
    metrics_path, preds_path = tmp_path / "m.json", tmp_path / "p.csv"
    write_results("m", split, actual, metrics_path, preds_path, extra={"valid_loss": 0.5})
    metrics = json.loads(metrics_path.read_text())
    assert metrics["accuracy"] == 1.0 and metrics["valid_loss"] == 0.5
    assert metrics["n_train"] + metrics["n_valid"] == len(table) and metrics["n_classes"] == 3
    assert preds_path.read_text().splitlines()[0] == "filename,actual,predicted"

    metrics_path.unlink(), preds_path.unlink()
    with pytest.raises(TrainingError):
        write_results("m", split, np.full(len(actual), "class_0"), metrics_path, preds_path)
    assert not metrics_path.exists() and not preds_path.exists()


def test_non_finite_inputs_are_rejected(tmp_path):
    table = separable_table()
    table.loc[3, "stft_mean_2"] = np.nan
    path = tmp_path / "n.parquet"
    table.to_parquet(path)
    with pytest.raises(TrainingError, match=r"non-finite feature values in 1 clip\(s\), "
                                            r"e\.g\. 3\.wav \(train split\)"):
        Split.load(path).check_finite()
