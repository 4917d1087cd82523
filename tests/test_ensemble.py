"""train-ensemble: valid calibrated probabilities, grouped folds, metrics like every model's."""

import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from stages.evaluate import METRICS, Scores, TrainingError
from stages.models.ensemble import build as build_ensemble
from stages.models.ensemble import check_probabilities
from stages.models.nn import TabularNN
from stages.params import ParamError
from stages.table import Round, save_inputs
from stages.train_ensemble import fit_round, main
from tests.conftest import REPO
from tests.test_train import PARAMS, grouped_table

ENSEMBLE = {"members": ["svc", "nn-2layer", "nn-5layer"], "calibration": "temperature",
            "calibration_folds": 3, "n_jobs": 1}


def round_of(table: pd.DataFrame, name: str = "valid") -> Round:
    return Round(name, table, [c for c in table.columns if c.startswith("stft_")])


def test_probabilities_are_valid_and_the_vote_is_their_mean():
    rnd = round_of(grouped_table())
    ensemble, result = fit_round({**PARAMS, "ensemble": ENSEMBLE}, rnd)
    x_valid, y_valid = rnd.xy("valid")
    probs = ensemble.predict_proba(x_valid)
    assert probs.shape == (len(x_valid), 3)
    assert np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    members = [m.predict_proba(x_valid) for m in ensemble.vote_.named_estimators_.values()]
    np.testing.assert_allclose(probs, np.mean(members, axis=0), rtol=1e-6)
    assert list(ensemble.classes_) == ["class_0", "class_1", "class_2"]
    assert (result.predicted == ensemble.classes_[probs.argmax(axis=1)]).all()
    assert (result.predicted == y_valid).mean() > 0.9  # separable data; chance is 1/3
    assert set(result.extra) == {"accuracy_svc", "accuracy_nn-2layer", "accuracy_nn-5layer"}


def test_calibration_folds_and_nn_members_keep_recordings_together(monkeypatch):
    seen = []
    original = TabularNN.learner

    def spy(self, X, y, groups=None, watch=None):
        seen.append(pd.Series(groups).value_counts())
        return original(self, X, y, groups, watch)

    monkeypatch.setattr(TabularNN, "learner", spy)
    rnd = round_of(grouped_table())  # 4 clips per recording, all in training or validation
    per_recording = rnd.rows("train")["src_file"].value_counts()
    params = {**PARAMS, "ensemble": {**ENSEMBLE, "members": ["svc", "nn-2layer"]}}
    fit_round(params, rnd)
    assert len(seen) == 3  # one NN per calibration fold
    for counts in seen:  # the NN got the groups, and no recording was cut by the folds
        assert (counts == per_recording[counts.index]).all()
        assert len(counts) < len(per_recording)


def test_an_unknown_member_stops_the_stage_before_any_training(tmp_path):
    grouped_table().assign(round="fold5").to_parquet(tmp_path / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ensemble"]["members"] = ["svc", "knn"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit, match=r"train-ensemble: no model called 'knn' \(known: "
                                             r"svc, nn-2layer, nn-5layer, cnn, pretrained, "
                                             r"ensemble\)"):
            main(["normalized.parquet", "model.joblib", "metrics.json", "predictions.csv"])
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "metrics.json").exists()


def test_invalid_probabilities_are_refused():
    check_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]), "m")
    for bad in ([[0.2, 0.7], [1.0, 0.0]], [[np.nan, 1.0], [0.5, 0.5]], [[-0.1, 1.1], [1, 0]]):
        with pytest.raises(TrainingError, match="m gave invalid class probabilities"):
            check_probabilities(np.array(bad), "m")


def test_stage_scores_every_round_like_the_other_models(tmp_path):
    table = grouped_table(n_per_class=20)
    rounds = []
    for k in range(2):  # two rounds, whole recordings on one side
        valid = (np.arange(len(table)) // 4) % 2 == k
        rounds.append(table.assign(round=f"fold{k + 1}", split=np.where(valid, "valid", "train")))
    pd.concat(rounds).to_parquet(tmp_path / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update({k: PARAMS[k] for k in ("svc", "nn", "nn_deep")},
                  ensemble={**ENSEMBLE, "members": ["svc", "nn-5layer"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(["normalized.parquet", "model.joblib", "metrics.json", "predictions.csv"])
    finally:
        os.chdir(cwd)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert list(metrics["rounds"]) == ["fold1", "fold2"] and len(preds) == len(table)
    scores = Scores.of(preds)
    assert {m: metrics[m] for m in METRICS} == pytest.approx(scores.mean)
    assert metrics["std"] == pytest.approx(scores.std)
    assert set(metrics["rounds"]["fold1"]) >= {"accuracy_svc", "accuracy_nn-5layer"}
    model = joblib.load(tmp_path / "model.joblib")  # the primary round's, ready to use
    fold1 = rounds[0][rounds[0]["split"] == "valid"]
    predicted = model.predict(fold1[[c for c in table if c.startswith("stft_")]].to_numpy())
    assert (predicted == preds.loc[preds["round"] == "fold1", "predicted"]).all()


def test_members_trained_at_once_give_the_same_ensemble():
    """ensemble.n_jobs: 2 trains the members in parallel processes, each on one thread, as
    n_jobs: 1 does one after the other: the same probabilities (to float noise)."""
    rnd = round_of(grouped_table(n_per_class=12))
    probs = []
    for n_jobs in (1, 2):
        params = {**PARAMS, "ensemble": {**ENSEMBLE, "members": ["svc", "nn-2layer"],
                                         "n_jobs": n_jobs}}
        ensemble, _ = fit_round(params, rnd)
        probs.append(ensemble.predict_proba(rnd.xy("valid")[0]))
    # each member's fit is single-threaded; the calibration's float64 optimization runs
    # on the process's BLAS threads, which differ: equal to 1e-6, identical votes
    np.testing.assert_allclose(probs[0], probs[1], rtol=1e-6, atol=1e-9)
    assert (probs[0].argmax(axis=1) == probs[1].argmax(axis=1)).all()


def member_project(folder, labels, features, inputs, inputs_file, members,
                   monkeypatch) -> pd.DataFrame:
    """A train-ensemble project in ``folder`` (the working directory from now on): a
    normalized table of ``features`` (every fourth clip validation), the ``inputs`` of the
    same clips as the member's stage writes them, and params with ``members``."""
    names = np.array([f"{i}.wav" for i in range(len(labels))])
    save_inputs(folder / inputs_file, names, inputs)
    table = pd.DataFrame(features, columns=[f"mel_mean_{i}" for i in range(features.shape[1])])
    table.insert(0, "filename", names)
    table.insert(1, "label", labels)
    table.insert(2, "split", np.where(np.arange(len(labels)) % 4 == 0, "valid", "train"))
    table.to_parquet(folder / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["svc"] = PARAMS["svc"]
    params["ensemble"] = {**ENSEMBLE, "members": members}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(folder)
    return table


def test_the_cnn_joins_the_ensemble_on_its_spectrograms(tmp_path, monkeypatch):
    """A member that reads spectrograms (the CNN) takes them from --inputs, after the
    features in the ensemble's X; without them the stage stops naming what is missing."""
    from tests.test_cnn import SMALL, rhythm_set

    x, labels = rhythm_set(n_per_class=30, seed=4)  # time structure only: the CNN hears it
    summary = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)  # what features see
    table = member_project(tmp_path, labels, summary, x.astype(np.float16), "s.npz",
                           ["svc", "cnn"], monkeypatch)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["cnn"]["training"] = SMALL
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["normalized.parquet", "model.joblib", "metrics.json", "predictions.csv"]
    with pytest.raises(SystemExit, match=r"'ensemble.members': cnn reads spectrograms: give "
                                         r"train-ensemble its stage's --inputs file"):
        main(args)
    main([*args, "--inputs", "s.npz"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy_cnn"] >= 0.9 and metrics["accuracy_svc"] <= 0.75, metrics
    assert metrics["accuracy"] >= 0.85, metrics
    valid = table["split"] == "valid"  # the saved model reads the features, then the clip
    joined = np.concatenate([summary, x.astype(np.float16).reshape(len(x), -1)], axis=1)
    predicted = joblib.load(tmp_path / "model.joblib").predict(joined[valid])
    assert (predicted == pd.read_csv(tmp_path / "predictions.csv")["predicted"]).all()


def test_the_pretrained_model_joins_the_ensemble_on_its_embeddings(tmp_path, monkeypatch):
    """As the CNN: a member that reads embeddings takes them from --inputs (the
    embeddings stage's file), after the features in the ensemble's X."""
    rng = np.random.default_rng(5)
    labels = np.repeat(["dog", "rain", "siren"], 30)
    embedded = rng.normal(size=(len(labels), 24)).astype(np.float32)
    embedded[np.arange(len(labels)), np.unique(labels, return_inverse=True)[1]] += 4
    member_project(tmp_path, labels, rng.normal(size=(len(labels), 12)),  # features: noise
                   embedded, "e.npz", ["svc", "pretrained"], monkeypatch)
    args = ["normalized.parquet", "model.joblib", "metrics.json", "predictions.csv"]
    with pytest.raises(SystemExit, match=r"'ensemble.members': pretrained reads embeddings"):
        main(args)
    main([*args, "--inputs", "e.npz"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy_pretrained"] >= 0.9 and metrics["accuracy_svc"] <= 0.6, metrics


def test_members_reading_two_kinds_of_other_inputs_are_refused_by_name():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ensemble"]["members"] = ["svc", "cnn", "pretrained"]
    with pytest.raises(ParamError, match=r"'ensemble.members': cnn reads spectrograms, "
                                         r"pretrained reads embeddings; the ensemble takes "
                                         r"one kind"):
        build_ensemble(params, ["mel_mean_0"], None, (4,))
