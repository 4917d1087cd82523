"""Scores and the guard against a collapsed model."""

import json

import numpy as np
import pandas as pd
import pytest

from soundclf.evaluation.fit import class_probabilities, train_rounds
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round, RoundResult, load_rounds
from soundclf.evaluation.scores import (
    Scores,
    check_not_collapsed,
    classification_metrics,
    write_results,
)
from soundclf.params import METRICS
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
    rnd = load_rounds(path)[0]
    _, actual = rnd.xy("valid")
    metrics_path, preds_path = tmp_path / "m.json", tmp_path / "p.csv"
    write_results("m", [RoundResult(rnd, actual, {"valid_loss": 0.5})], metrics_path,
                  preds_path)
    metrics = json.loads(metrics_path.read_text())
    assert metrics["accuracy"] == 1.0 and metrics["valid_loss"] == 0.5
    assert metrics["n_train"] + metrics["n_valid"] == len(table) and metrics["n_classes"] == 3
    assert "std" not in metrics and "rounds" not in metrics  # one round: the original format
    assert preds_path.read_text().splitlines()[0] == "filename,round,actual,predicted"

    metrics_path.unlink(), preds_path.unlink()
    with pytest.raises(TrainingError):
        write_results("m", [RoundResult(rnd, np.full(len(actual), "class_0"))],
                      metrics_path, preds_path)
    assert not metrics_path.exists() and not preds_path.exists()


def test_several_rounds_report_each_round_with_mean_and_std(tmp_path):
    table = separable_table(n_per_class=20)
    features = [c for c in table.columns if c.startswith("stft")]
    results, accuracies = [], []
    for k in range(3):  # round k: every 3rd clip from k on is validation; k wrong answers
        part = table.assign(split=np.where(np.arange(len(table)) % 3 == k, "valid", "train"))
        rnd = Round(f"r{k}", part, features)
        predicted = rnd.xy("valid")[1].copy()
        predicted[:k] = "class_2" if predicted[0] != "class_2" else "class_1"
        accuracies.append(1 - k / len(predicted))
        results.append(RoundResult(rnd, predicted, {"valid_loss": float(k)}))
    metrics = write_results("m", results, tmp_path / "m.json", tmp_path / "p.csv")
    assert metrics == json.loads((tmp_path / "m.json").read_text())
    assert list(metrics["rounds"]) == ["r0", "r1", "r2"] and metrics["n_rounds"] == 3
    assert [r["accuracy"] for r in metrics["rounds"].values()] == pytest.approx(accuracies)
    assert metrics["accuracy"] == pytest.approx(np.mean(accuracies))
    assert metrics["std"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert metrics["rounds"]["r2"]["valid_loss"] == 2.0
    assert metrics["rounds"]["r0"]["n_valid"] == 20 and metrics["rounds"]["r0"]["n_train"] == 40
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == 60 and list(preds["round"].unique()) == ["r0", "r1", "r2"]
    scores = Scores.of(preds)  # what compare recomputes from the predictions alone
    assert scores.mean == pytest.approx({m: metrics[m] for m in METRICS})
    assert scores.std == pytest.approx(metrics["std"])


def test_rounds_load_in_order_with_the_primary_first(tmp_path):
    table = separable_table()
    stacked = pd.concat([table.assign(round=name) for name in ("fold5", "fold1", "fold2")])
    stacked.to_parquet(tmp_path / "n.parquet")
    rounds = load_rounds(tmp_path / "n.parquet")
    assert [r.name for r in rounds] == ["fold5", "fold1", "fold2"]
    assert all(len(r.table) == len(table) and "round" not in r.features for r in rounds)


def test_non_finite_inputs_are_rejected(tmp_path):
    table = separable_table()
    table.loc[3, "stft_mean_2"] = np.nan
    path = tmp_path / "n.parquet"
    table.to_parquet(path)
    trained = []
    with pytest.raises(TrainingError, match=r"non-finite feature values in 1 clip\(s\), "
                                            r"e\.g\. 3\.wav \(train split of round valid\)"):
        train_rounds("m", path, lambda rnd, primary: trained.append(rnd), tmp_path / "m.json",
                     tmp_path / "p.csv")
    assert not trained and not (tmp_path / "m.json").exists()


def test_a_model_without_class_probabilities_is_refused_naming_it():
    class Hard:  # predicts labels only
        classes_ = np.array(["a", "b"])

        def predict(self, X):
            return self.classes_[np.zeros(len(X), dtype=int)]

    with pytest.raises(TrainingError, match="Hard has neither predict_proba nor "
                                            "decision_function"):
        class_probabilities(Hard(), np.zeros((2, 3)), np.array(["a", "b"]))
