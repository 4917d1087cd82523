"""tune.*: hyperparameters chosen by inner CV on a round's training part, never its validation."""

import dataclasses
import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import BaseEstimator
from sklearn.svm import LinearSVC

from soundclf.evaluation import tune as tune_module
from soundclf.evaluation.fit import class_probabilities
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round
from soundclf.evaluation.tune import inner_folds, search
from soundclf.models import get
from soundclf.params import ParamError, validate, with_values
from stages import train
from tests.conftest import REPO, separable_table
from tests.test_train import PARAMS

TUNE = {"svc": {"C": None}, "nn": {"ps": None}, "cnn": {"epochs": None},
        "pretrained": {"C": None}, "folds": 4, "max_folds": None, "metric": "accuracy",
        "n_jobs": 1}
FEATURES = [f"stft_mean_{i}" for i in range(12)]


def esc50_like(n_per_class: int = 40) -> pd.DataFrame:
    """5 official folds, 2 clips per recording, fold 5 the validation split. Class k is an
    offset on feature k under a loud noise that feature k + 3 repeats: a LinearSVC finds
    the difference with C=1 (accuracy 1 here) but not held near zero by C=1e-6 (about 0.4)."""
    table = separable_table(n_per_class=n_per_class, seed=5)
    rng = np.random.default_rng(1)
    labels = table["label"].str[-1].astype(int).to_numpy()
    for k in range(3):
        noise = rng.normal(0, 8, len(table)).astype(np.float32)
        table[f"stft_mean_{k}"] = (labels == k) * 4.0 + noise + rng.normal(0, 0.3, len(table))
        table[f"stft_mean_{k + 3}"] = noise
    table["fold"] = np.arange(len(table)) // 2 % 5 + 1
    table["src_file"] = [f"rec{i // 2}" for i in range(len(table))]
    table["split"] = np.where(table["fold"] == 5, "valid", "train")
    return table


def svc_params(grid: dict, **tune) -> dict:
    return {**PARAMS, "tune": {**TUNE, "svc": grid, **tune}}


def inner_accuracies(table: pd.DataFrame, C: float) -> dict[int, float]:
    """A LinearSVC's accuracy on each official fold 1-4, trained on the other three."""
    train = table[table["fold"] != 5]
    found = {}
    for fold in (1, 2, 3, 4):
        inner_train, inner_valid = train[train["fold"] != fold], train[train["fold"] == fold]
        model = LinearSVC(C=C, dual=False, random_state=42).fit(
            inner_train[FEATURES], inner_train["label"])
        found[fold] = (model.predict(inner_valid[FEATURES]) == inner_valid["label"]).mean()
    return found


def test_the_choice_is_the_best_mean_over_the_other_official_folds():
    table = esc50_like()
    params = svc_params({"C": [1e-6, 1.0]})
    tuned, chosen = search(get("svc"), params, Round("fold5", table, FEATURES))
    assert chosen["tuned"] == {"C": 1.0} and tuned["svc"]["C"] == 1.0
    assert params["svc"]["C"] == 1.0 and tuned is not params  # the input is left alone
    # the inner score is the mean accuracy over folds 1-4, each predicted from the other 3
    assert chosen["tuned_accuracy"] == pytest.approx(np.mean(list(
        inner_accuracies(table, 1.0).values())))


def test_max_folds_scores_the_first_inner_folds_each_trained_on_all_the_others():
    table = esc50_like()
    accuracies = inner_accuracies(table, 1e-6)  # they differ from fold to fold here
    assert np.mean([accuracies[1], accuracies[2]]) != pytest.approx(
        np.mean(list(accuracies.values())))
    _, chosen = search(get("svc"), svc_params({"C": [1e-6]}, max_folds=2),
                       Round("fold5", table, FEATURES))
    assert chosen["tuned_accuracy"] == pytest.approx(np.mean([accuracies[1], accuracies[2]]))


def test_the_validation_split_is_never_read():
    table = esc50_like()
    params = svc_params({"C": [1e-6, 0.01, 1.0]}, metric="f1_macro")
    _, chosen = search(get("svc"), params, Round("fold5", table, FEATURES))
    scrambled = table.copy()
    valid = scrambled["split"] == "valid"
    scrambled.loc[valid, FEATURES] = np.random.default_rng(0).normal(
        size=(valid.sum(), len(FEATURES))).astype(np.float32)
    scrambled.loc[valid, "label"] = "class_0"
    _, again = search(get("svc"), params, Round("fold5", scrambled, FEATURES))
    assert again == chosen and set(chosen) == {"tuned", "tuned_f1_macro"}


def test_without_candidates_nothing_is_searched():
    params = svc_params({"C": None})
    calls = []
    counted = dataclasses.replace(get("svc"), build=lambda p, f: calls.append(p))
    assert search(counted, params, Round("v", esc50_like(), FEATURES)) == (params, {})
    assert not calls


def test_inner_folds_without_official_ones_are_stratified_and_cover_the_training_part():
    train = separable_table(n_per_class=20).drop(columns="split")
    folds = inner_folds(train, 4, seed=42)
    assert list(folds) == ["inner1", "inner2", "inner3", "inner4"]
    stacked = np.vstack(list(folds.values()))
    assert (stacked.sum(axis=0) == 1).all()  # every clip validated exactly once
    for mask in folds.values():
        assert (train.loc[mask, "label"].value_counts() == 5).all()


def test_a_failing_candidate_loses_and_all_failing_stop_the_stage():
    params = svc_params({"C": [0.5, 1.0]})
    rnd = Round("fold5", esc50_like(), FEATURES)

    class Diverges(BaseEstimator):
        def fit(self, X, y):
            raise TrainingError("loss became nan")

    svc = get("svc")
    fails_at_half = dataclasses.replace(svc, build=lambda p, f: (
        Diverges() if p["svc"]["C"] == 0.5 else svc.build(p, f)))
    assert search(fails_at_half, params, rnd)[1]["tuned"] == {"C": 1.0}

    always_fails = dataclasses.replace(svc, build=lambda p, f: Diverges())
    with pytest.raises(TrainingError, match=r"every tune\.svc candidate failed in round fold5"):
        search(always_fails, params, rnd)


@pytest.mark.parametrize(("grid", "message"), [
    ({"layers": [[8]]}, r"'tune\.nn' key 'layers' cannot be tuned \(tunable: epochs, lr"),
    ({"lrr": [0.1]}, r"'tune\.nn' key 'lrr' cannot be tuned"),
    ({"ps": [0.0, 2]}, r"'tune\.nn' ps: 2 must be a probability in \[0, 1\)"),
    ({"ps": []}, r"'tune\.nn' ps: must be null or a non-empty list"),
    ({"ps": 0.25}, r"'tune\.nn' ps: must be null or a non-empty list"),
    ([0.1], r"'tune\.nn' must be a mapping of nn\.training keys"),
])
def test_bad_grids_are_refused_naming_the_key(grid, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tune"]["nn"] = grid
    with pytest.raises(ParamError, match=message):
        validate(params)


def run_stage(tmp_path, main, args, **changes) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update({k: PARAMS[k] for k in ("svc", "nn", "nn_deep")}, **changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(args)
    finally:
        os.chdir(cwd)
    return json.loads((tmp_path / next(a for a in args if a.endswith(".json"))).read_text())


def test_stages_record_each_rounds_choice(tmp_path):
    table = esc50_like()
    rounds = [table.assign(round=f"fold{k}", split=np.where(table["fold"] == k, "valid", "train"))
              for k in (5, 1)]
    pd.concat(rounds).to_parquet(tmp_path / "normalized.parquet")
    tune = {**TUNE, "svc": {"C": [1e-6, 0.02]}}
    svc = run_stage(tmp_path, train.main, ["svc", "normalized.parquet", "svc.joblib",
                                           "svc.json", "svc.csv"], tune=tune)
    official = (("fold5", [1, 2, 3, 4]), ("fold1", [2, 3, 4, 5]))
    for part, (name, inner) in zip(rounds, official, strict=True):
        record = svc["rounds"][name]
        assert record["tuned"] == {"C": 0.02} and record["tuned_accuracy"] > 0.9
        rnd = Round(name, part, FEATURES)
        assert list(inner_folds(rnd.rows("train"), 4, 42)) == [f"fold{f}" for f in inner]
        _, alone = search(get("svc"), {**PARAMS, "tune": tune}, rnd)
        assert alone == {"tuned": record["tuned"], "tuned_accuracy": record["tuned_accuracy"]}
    assert joblib.load(tmp_path / "svc.joblib").estimator.C == svc["rounds"]["fold5"]["tuned"]["C"]


@pytest.mark.parametrize("max_folds", [None, 2])
def test_out_of_fold_probabilities_are_the_searchs_fits_of_its_choice(tmp_path, monkeypatch,
                                                                      max_folds):
    """With --probabilities, each training clip's probabilities come from the chosen C
    trained on the other inner folds; the search's fits are reused, not trained again
    (with tune.max_folds 2, the two folds it did not score are trained for them)."""
    table = esc50_like()
    table.assign(round="fold5").to_parquet(tmp_path / "normalized.parquet")
    fits = []
    fit_fold = tune_module.fit_fold
    monkeypatch.setattr(tune_module, "fit_fold", lambda *a: fits.append(a[2].name) or fit_fold(*a))
    cuts = []  # the inner folds are cut once for both (their messages printed once)
    monkeypatch.setattr(tune_module, "inner_folds",
                        lambda *a, **k: cuts.append(a[3]) or inner_folds(*a, **k))
    tune = {**TUNE, "svc": {"C": [1e-6, 0.02]}, "max_folds": max_folds}
    run_stage(tmp_path, train.main, ["svc", "normalized.parquet", "svc.joblib", "svc.json",
                                     "svc.csv", "--probabilities", "svc.parquet"], tune=tune,
              oof={"folds": None, "epochs": 1.0})
    scored = 4 if max_folds is None else max_folds
    assert len(fits) == 2 * scored + (4 - scored)  # 2 candidates, then the unscored folds
    assert cuts == ["round fold5"]
    probs = pd.read_parquet(tmp_path / "svc.parquet")
    assert list(probs.columns[:5]) == ["round", "split", "filename", "label", "fold"]
    classes = sorted(table["label"].unique())
    assert list(probs.columns[5:]) == [f"p_{c}" for c in classes]
    oof = probs[probs["split"] == "train"]
    train_rows = table[table["fold"] != 5]
    assert sorted(oof["filename"]) == sorted(train_rows["filename"])  # each training clip once
    chosen = with_values(PARAMS, "svc", {"C": 0.02})
    for fold in (1, 4):
        rows = oof[oof["fold"] == f"fold{fold}"].set_index("filename")
        inner = train_rows[train_rows["fold"] != fold]
        held = train_rows[train_rows["fold"] == fold].set_index("filename")
        model = get("svc").build(chosen, FEATURES).fit(inner[FEATURES].to_numpy(), inner["label"])
        expected = class_probabilities(model, held[FEATURES].to_numpy(), np.array(classes))
        np.testing.assert_allclose(rows.loc[held.index, [f"p_{c}" for c in classes]],
                                   expected, rtol=1e-6, atol=1e-9)
        assert (rows.loc[held.index, "label"] == held["label"]).all()
    valid = probs[probs["split"] == "valid"]
    assert sorted(valid["filename"]) == sorted(table.loc[table["fold"] == 5, "filename"])
    predicted = pd.read_csv(tmp_path / "svc.csv").set_index("filename")["predicted"]
    best = np.array(classes)[valid[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)]
    assert (predicted.loc[valid["filename"]].to_numpy() == best).all()


def test_oof_epochs_trains_the_out_of_fold_fits_for_that_share_of_the_epochs(monkeypatch):
    """oof.epochs 0.5: an MLP's out-of-fold fits train half its epochs, the search's and the
    round's final fit all of them; a model not trained by epochs is as params say."""
    params = {**PARAMS, "tune": {**TUNE, "max_folds": 1}, "oof": {"folds": 2, "epochs": 0.5}}
    assert tune_module.oof_params(get("svc"), params) is params
    assert tune_module.oof_params(get("nn-2layer"), params)["nn"]["training"]["epochs"] == 4
    tiny = with_values(params, "nn.training", {"epochs": 1})
    assert tune_module.oof_params(get("nn-5layer"), tiny)["nn"]["training"]["epochs"] == 1
    assert params["nn"]["training"]["epochs"] == 8  # not changed in place
    seen = []
    fit_fold = tune_module.fit_fold
    monkeypatch.setattr(tune_module, "fit_fold", lambda model, p, fold, alone=False: seen.append(
        (fold.name, p["nn"]["training"]["epochs"])) or fit_fold(model, p, fold, alone))
    rnd = Round("fold5", esc50_like(n_per_class=10), FEATURES)
    model = get("nn-2layer")
    grid = {**params, "tune": {**params["tune"], "nn": {"ps": [0.0]}}}
    tuned, _, known = tune_module.search_folds(model, grid, rnd)
    oof = tune_module.out_of_fold(model, tuned, rnd, known)
    # the search's fit of fold 1 (8 epochs) is reused; fold 2 is trained for 4
    assert seen == [("fold5/fold1", 8), ("fold5/fold2", 4)]
    assert set(oof["fold"]) == {"fold1", "fold2"}


def test_oof_folds_0_trains_nothing_more_and_writes_the_validation_rows_alone(tmp_path,
                                                                            monkeypatch):
    table = esc50_like()
    table.assign(round="fold5").to_parquet(tmp_path / "normalized.parquet")
    fits = []
    fit_fold = tune_module.fit_fold
    monkeypatch.setattr(tune_module, "fit_fold", lambda *a: fits.append(a) or fit_fold(*a))
    run_stage(tmp_path, train.main, ["svc", "normalized.parquet", "svc.joblib", "svc.json",
                                     "svc.csv", "--probabilities", "svc.parquet"],
              tune=TUNE, oof={"folds": 0, "epochs": 1.0})
    probs = pd.read_parquet(tmp_path / "svc.parquet")
    assert fits == [] and set(probs["split"]) == {"valid"}
    assert len(probs) == (table["fold"] == 5).sum()


@pytest.mark.slow  # two worker processes, each importing fastai
def test_the_search_chooses_the_same_whatever_the_number_of_parallel_fits():
    """tune.n_jobs fits at a time, each on one thread: the scores, not only the choice,
    are the same for 1 and 2 at a time (NNs included, whose torch sums depend on threads)."""
    rnd = Round("fold5", esc50_like(n_per_class=10), FEATURES)
    found = []
    for n_jobs in (1, 2):
        params = {**PARAMS, "nn": {**PARAMS["nn"], "training": {**PARAMS["nn"]["training"],
                                                                 "epochs": 2}},
                  "tune": {**TUNE, "nn": {"ps": [0.0, 0.5]}, "n_jobs": n_jobs}}
        found.append(search(get("nn-2layer"), params, rnd))
    (tuned_1, chosen_1), (tuned_2, chosen_2) = found
    assert chosen_1 == chosen_2 and tuned_1["nn"] == tuned_2["nn"]
    assert set(chosen_1["tuned"]) == {"ps"}


def test_the_pretrained_models_grid_is_searched_on_its_embeddings():
    """tune.pretrained searches the pretrained section on the round's embeddings (its
    --inputs), not on the feature columns: here only the embeddings know the classes."""
    table = esc50_like()
    labels = table["label"].str[-1].astype(int).to_numpy()
    rng = np.random.default_rng(2)
    embedded = rng.normal(size=(len(table), 8))
    embedded[np.arange(len(table)), labels] += 3.0  # separable, unless C forbids any weight
    table[FEATURES] = rng.normal(size=(len(table), len(FEATURES))).astype(np.float32)
    by_name = {name: i for i, name in enumerate(table["filename"])}
    rnd = Round("fold5", table, FEATURES).with_inputs(by_name, embedded, "embeddings.npz")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tune"] = {**TUNE, "pretrained": {"C": [1e-6, 1.0]}}
    tuned, chosen = search(get("pretrained-aisfx"), params, rnd)
    assert chosen["tuned"] == {"C": 1.0} and chosen["tuned_accuracy"] > 0.9
    assert tuned["pretrained"]["C"] == 1.0 and tuned["svc"] == params["svc"]


def test_a_lone_inner_fit_uses_every_thread_and_several_use_one_each(monkeypatch):
    """One out-of-fold fit (oof.folds 1, no search) runs here on this process's threads,
    as the final fit does; two or more run on one thread each, whatever tune.n_jobs."""
    import torch

    threads = []

    def fit_predict(estimator, rnd):
        threads.append(torch.get_num_threads())
        return None, rnd.name
    monkeypatch.setattr(tune_module, "fit_predict", fit_predict)
    model = get("svc")
    rounds = [Round(f"r{i}", pd.DataFrame({"filename": [], "label": [], "split": []}), [])
              for i in range(2)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert tune_module.fit_folds(model, [(PARAMS, rounds[0])], -1, "one") == ["r0"]
        assert tune_module.fit_folds(model, [(PARAMS, r) for r in rounds], 1, "two") == [
            "r0", "r1"]
    finally:
        torch.set_num_threads(before)
    assert threads == [2, 1, 1]
