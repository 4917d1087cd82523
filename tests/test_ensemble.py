"""train-ensemble: weights learned on out-of-fold probabilities, never on a validation clip.

The members here are logistic regressions that each read some columns of a synthetic table,
trained and written by the code every model stage runs (soundclf.evaluation.train.fit_round with its
out-of-fold probabilities, probabilities_table); the ensemble stage reads them as dvc.yaml's
ensemble-member stages lay them out.
"""

import json

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.optimize import check_grad
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from soundclf.evaluation.probabilities import TrainingError, check_probabilities
from soundclf.evaluation.rounds import Round
from soundclf.evaluation.train import fit_round, probabilities_table
from soundclf.models import Model
from soundclf.models.ensemble import L2, Combination, fit_weights, pool_loss
from stages import ensemble_member, train_ensemble
from tests.conftest import REPO
from tests.test_tune import TUNE

PARAMS = {"seed": 42, "tune": TUNE, "oof": {"folds": None, "epochs": 1.0}}


def reading(name: str, columns: list[int], C: float = 1.0) -> Model:
    """A member that reads only ``columns`` of X."""
    def build(params, features):
        return make_pipeline(ColumnTransformer([("seen", "passthrough", columns)]),
                             LogisticRegression(C=C, max_iter=2000))
    return Model(name, name, params=(), build=build)


def factor_table(n_per_class: int = 30, seed: int = 0, noise: int = 20) -> pd.DataFrame:
    """6 classes, each a pair (a, b) of a 3-valued and a 2-valued factor: columns 0-2 show
    a (one member's "time structure"), columns 3-4 show b (another's "spectra"), each under
    noise, and ``noise`` more columns are noise alone. 5 official folds, 2 clips a
    recording."""
    rng = np.random.default_rng(seed)
    classes = [(a, b) for a in range(3) for b in range(2)]
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    rng.shuffle(labels)
    x = rng.normal(size=(len(labels), 5 + noise))
    for k, (a, b) in enumerate(classes):
        x[labels == k, a] += 2.5
        x[labels == k, 3 + b] += 2.5
    table = pd.DataFrame(x, columns=[f"stft_mean_{i}" for i in range(x.shape[1])])
    table.insert(0, "filename", [f"{i}.wav" for i in range(len(labels))])
    table.insert(1, "label", [f"a{classes[k][0]}b{classes[k][1]}" for k in labels])
    table.insert(2, "fold", np.arange(len(labels)) // 2 % 5 + 1)
    table.insert(3, "src_file", [f"rec{i // 2}" for i in range(len(labels))])
    return table


def rounds_of(table: pd.DataFrame, folds=(5, 1)) -> list[Round]:
    features = [c for c in table.columns if c.startswith("stft_")]
    return [Round(f"fold{k}", table.assign(split=np.where(table["fold"] == k, "valid", "train")),
                  features) for k in folds]


def write_members(folder, rounds: list[Round], members: list[Model]) -> None:
    """Each member's probabilities of every round, as its stage and ensemble-member write
    them into the ensemble's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for member in members:
        results = [fit_round(member, PARAMS, rnd, out_of_fold=True)[1] for rnd in rounds]
        probabilities_table(results).to_parquet(folder / f"{member.name}.parquet")


def run_ensemble(tmp_path, monkeypatch, members: list[str], combine: str = "weighted",
                 folder: str = "members") -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ensemble"] = {"members": members, "combine": combine}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("soundclf.models.get", lambda name: Model(name, name, (), None))
    train_ensemble.main([folder, "ensemble.joblib", "ensemble.json", "ensemble.csv"])
    return json.loads((tmp_path / "ensemble.json").read_text())


def test_members_that_see_different_parts_of_the_signal_beat_each_of_them_together(
        tmp_path, monkeypatch):
    """One member sees the 3-valued factor, the other the 2-valued one: alone, each can at
    best tell its factor (1/2 and 1/3 of the 6 classes); the learned pool tells both."""
    write_members(tmp_path / "members", rounds_of(factor_table()),
                  [reading("time", [0, 1, 2]), reading("spectra", [3, 4])])
    for combine in ("weighted", "vote"):
        metrics = run_ensemble(tmp_path, monkeypatch, ["time", "spectra"], combine)
        for rnd in metrics["rounds"].values():
            assert rnd["accuracy_time"] < 0.55 and rnd["accuracy_spectra"] < 0.4
            assert rnd["accuracy"] > max(rnd["accuracy_time"], rnd["accuracy_spectra"]) + 0.25


def test_a_strong_member_among_noise_keeps_its_score_where_the_equal_vote_does_not(
        tmp_path, monkeypatch):
    """Two members read noise alone and are sure of themselves (weak L2): the learned
    weights leave them out, the equal vote lets them outvote the one that knows."""
    noise = [reading(f"noise{k}", list(range(5 + 40 * k, 45 + 40 * k)), C=1e4)
             for k in range(2)]
    write_members(tmp_path / "members", rounds_of(factor_table(seed=1, noise=80)),
                  [reading("strong", list(range(5))), *noise])
    names = ["strong", "noise0", "noise1"]
    weighted = run_ensemble(tmp_path, monkeypatch, names, "weighted")
    vote = run_ensemble(tmp_path, monkeypatch, names, "vote")
    for name, rnd in weighted["rounds"].items():
        strong = rnd["accuracy_strong"]
        assert strong > 0.7 and max(rnd["accuracy_noise0"], rnd["accuracy_noise1"]) < 0.35
        assert rnd["accuracy"] >= strong - 0.02, name
        assert vote["rounds"][name]["accuracy"] < strong - 0.1, name
        w = rnd["weights"]
        assert w["noise0"] < 0.1 * w["strong"] and w["noise1"] < 0.1 * w["strong"]
    assert vote["rounds"]["fold5"]["weights"] == {"strong": 1.0, "noise0": 1.0, "noise1": 1.0}


def test_the_combination_never_reads_a_validation_clip(tmp_path, monkeypatch):
    """The validation rows' labels shuffled and their probabilities replaced by noise: the
    weights and the inner accuracy stay the same to the bit; only the scores move."""
    write_members(tmp_path / "members", rounds_of(factor_table()),
                  [reading("time", [0, 1, 2]), reading("spectra", [3, 4])])
    before = run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])
    for name in ("time", "spectra"):
        rng = np.random.default_rng(0)  # the same clips' labels shuffled for both members
        path = tmp_path / "members" / f"{name}.parquet"
        table = pd.read_parquet(path)
        valid = table["split"] == "valid"
        classes = [c for c in table.columns if c.startswith("p_")]
        table.loc[valid, "label"] = rng.permutation(table.loc[valid, "label"].to_numpy())
        table.loc[valid, classes] = rng.dirichlet(np.ones(len(classes)), valid.sum())
        table.to_parquet(path)
    after = run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])
    for name, rnd in before["rounds"].items():
        assert after["rounds"][name]["weights"] == rnd["weights"]
        assert after["rounds"][name]["inner_accuracy"] == rnd["inner_accuracy"]
        assert after["rounds"][name]["accuracy"] != rnd["accuracy"]


def test_the_stage_scores_every_round_with_each_member_beside_it(tmp_path, monkeypatch):
    table = factor_table()
    rounds = rounds_of(table)
    write_members(tmp_path / "members", rounds, [reading("time", [0, 1, 2]),
                                                 reading("spectra", [3, 4])])
    metrics = run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])
    assert list(metrics["rounds"]) == ["fold5", "fold1"] and metrics["n_rounds"] == 2
    fold5 = metrics["rounds"]["fold5"]
    assert fold5["n_valid"] == (table["fold"] == 5).sum()
    assert fold5["n_train"] == (table["fold"] != 5).sum()  # every training clip out of fold
    assert 0.6 < fold5["inner_accuracy"] <= 1 and set(fold5["weights"]) == {"time", "spectra"}
    predictions = pd.read_csv(tmp_path / "ensemble.csv")
    assert len(predictions) == len(table) * 2 // 5
    combination = joblib.load(tmp_path / "ensemble.joblib").estimator  # the primary round's
    members = {m: pd.read_parquet(tmp_path / "members" / f"{m}.parquet") for m in ("time",
                                                                                 "spectra")}
    x = np.stack([t[(t["round"] == "fold5") & (t["split"] == "valid")].sort_values(
        "filename").filter(like="p_").to_numpy() for t in members.values()], axis=1)
    expected = predictions[predictions["round"] == "fold5"].sort_values("filename")
    assert (combination.predict(x) == expected["predicted"].to_numpy()).all()
    assert combination.described() == fold5["weights"]


def test_missing_or_mismatched_member_probabilities_are_named(tmp_path, monkeypatch):
    rounds = rounds_of(factor_table())
    write_members(tmp_path / "members", rounds, [reading("time", [0, 1, 2])])
    with pytest.raises(SystemExit, match=r"train-ensemble: no probabilities of member spectra: "
                                         r"members/spectra\.parquet is missing \(dvc repro"):
        run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])
    write_members(tmp_path / "other", rounds[:1], [reading("spectra", [3, 4])])
    (tmp_path / "other" / "spectra.parquet").rename(tmp_path / "members" / "spectra.parquet")
    with pytest.raises(SystemExit, match=r"members/spectra\.parquet and members/time\.parquet "
                                         r"are of different classes or rounds"):
        run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])
    pd.read_parquet(tmp_path / "members" / "time.parquet").drop(columns="fold").to_parquet(
        tmp_path / "members" / "spectra.parquet")  # a table of something else
    with pytest.raises(SystemExit, match=r"members/spectra\.parquet is not a probabilities "
                                         r"table of stages\.train \(missing fold\)"):
        run_ensemble(tmp_path, monkeypatch, ["time", "spectra"])


def test_an_unknown_member_or_the_ensemble_itself_is_refused(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    for members, message in ((["svc", "knn"], r"no model called 'knn' \(known: svc, "
                                               r"nn-2layer, nn-5layer, cnn, pretrained-aisfx, "
                                               r".*zeroshot-clap, ensemble\)"),
                             (["svc", "ensemble"], "cannot include the ensemble itself")):
        params["ensemble"]["members"] = members
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(SystemExit, match=f"train-ensemble: .*{message}"):
            train_ensemble.main(["members", "m.joblib", "m.json", "m.csv"])
    assert not (tmp_path / "m.json").exists()


def test_the_member_stage_copies_a_complete_table_and_refuses_one_without_out_of_fold_rows(
        tmp_path):
    write_members(tmp_path / "probabilities", rounds_of(factor_table()),
                  [reading("time", [0, 1, 2])])
    source = tmp_path / "probabilities" / "time.parquet"
    ensemble_member.main(["time", str(source), str(tmp_path / "ensemble" / "time.parquet")])
    assert (tmp_path / "ensemble" / "time.parquet").read_bytes() == source.read_bytes()
    table = pd.read_parquet(source)
    table[~((table["round"] == "fold1") & (table["split"] == "train"))].to_parquet(source)
    with pytest.raises(SystemExit, match=r"ensemble-member: .*time\.parquet has no train clips "
                                         r"in round fold1: rerun train-time"):
        ensemble_member.main(["time", str(source), str(tmp_path / "out.parquet")])
    assert not (tmp_path / "out.parquet").exists()


def test_the_weights_minimize_the_log_loss_and_equal_members_share_equally():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(200, 3))
    probs[:, 2] = probs[:, 1]  # members 1 and 2 the same
    logs, targets = np.log(probs), rng.integers(0, 5, 200)

    def loss(w):  # the pool's mean log loss, written out
        pooled = np.einsum("m,nmc->nc", w, logs)
        return np.mean(np.log(np.exp(pooled).sum(axis=1)) - pooled[np.arange(200), targets])

    start = np.array([0.3, 0.2, 0.5])
    assert pool_loss(start, logs, targets)[0] == pytest.approx(
        loss(start) + L2 / 2 * start @ start, rel=1e-12)
    assert check_grad(lambda w: pool_loss(w, logs, targets)[0],
                      lambda w: pool_loss(w, logs, targets)[1], start) < 1e-6
    w = fit_weights(logs, targets)
    assert (w >= 0).all() and w[1] == pytest.approx(w[2], rel=1e-3)
    for step in np.vstack([np.eye(3), -np.eye(3)]) * 1e-3:  # no small move lowers it
        if (w + step >= 0).all():
            assert pool_loss(w + step, logs, targets)[0] >= pool_loss(w, logs, targets)[0] - 1e-9


def test_invalid_probabilities_are_refused():
    check_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]), "m")
    for bad in ([[0.2, 0.7], [1.0, 0.0]], [[np.nan, 1.0], [0.5, 0.5]], [[-0.1, 1.1], [1, 0]]):
        with pytest.raises(TrainingError, match="m gave invalid class probabilities"):
            check_probabilities(np.array(bad), "m")
    with pytest.raises(ValueError, match=r"expected \(clips, 2 members, classes\)"):
        Combination(["a", "b"]).fit(np.ones((4, 3, 2)) / 2, np.array(["x", "y", "x", "y"]))
