"""Real class counts: every place that splits by class adapts to 1-, 2- and 3-clip classes.

Each adapting path prints one line naming the parameter and the classes, and the class
list it then uses is checked here: tune's inner folds (and the out-of-fold probabilities
cut by them), early stopping's carved set, the FreeSound split, rounds whose validation has
a class training lacks, and the probabilities of a class a model never saw.
"""

import numpy as np
import pandas as pd
import pytest

from soundclf.data.datasets import ESC10, ESC50, FreeSound
from soundclf.evaluation.fit import class_probabilities, fit_predict
from soundclf.evaluation.folds import class_folds
from soundclf.evaluation.members import MemberRound
from soundclf.evaluation.members import fit_round as fit_ensemble
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round
from soundclf.evaluation.train import fit_round, probabilities_table
from soundclf.evaluation.tune import inner_folds
from soundclf.features.scaling import untrained_classes
from soundclf.models import get
from soundclf.models.fastai_base import early_stopping_rows
from tests.test_train import PARAMS
from tests.test_tune import TUNE

FEATURES = [f"stft_mean_{i}" for i in range(12)]


def uneven_table(sizes: dict[str, int], per_recording: int = 1, seed: int = 0) -> pd.DataFrame:
    """A normalized-stage table: ``sizes`` clips of each class (feature k + 4 for class k),
    ``per_recording`` consecutive clips of a class cut from one recording."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(list(sizes), list(sizes.values()))
    x = rng.normal(size=(len(labels), len(FEATURES))).astype(np.float32)
    for k, name in enumerate(sizes):
        x[labels == name, k % len(FEATURES)] += 4.0
    table = pd.DataFrame(x, columns=FEATURES)
    table.insert(0, "filename", [f"{i}.wav" for i in range(len(labels))])
    table.insert(1, "label", labels)
    within = np.concatenate([np.arange(n) for n in sizes.values()])
    table.insert(2, "src_file", [f"{c}-{i // per_recording}" for c, i in zip(labels, within,
                                                                              strict=True)])
    return table


SIZES = {"big": 12, "mid": 9, "three": 3, "two": 2, "one": 1}


def test_class_folds_keep_small_classes_in_training_and_name_them(capsys):
    table = uneven_table(SIZES)
    folds = class_folds(table["label"], table["src_file"], 3, 0, param="tune.folds",
                        where="round fold5")
    assert capsys.readouterr().out == (
        "tune.folds: class(es) with fewer than 3 clips in round fold5 "
        "kept in training only: one, two\n")  # one clip a recording here
    assert len(folds) == 3
    labels = table["label"].to_numpy()
    validated = np.concatenate([valid for _, valid in folds])
    assert sorted(validated) == sorted(np.flatnonzero(~np.isin(labels, ["one", "two"])))
    for train, valid in folds:
        assert set(labels[train]) == set(SIZES)  # every fold trains on every class
        assert not set(train) & set(valid)


def test_class_folds_keep_recordings_together_and_use_fewer_folds(capsys):
    table = uneven_table({"a": 6, "b": 6}, per_recording=3)  # two recordings a class
    folds = class_folds(table["label"], table["src_file"], 5, 0, param="nn.early_stopping_valid",
                        where="round fold1", keep_below=2)  # as early stopping cuts
    out = capsys.readouterr().out
    assert out == ("nn.early_stopping_valid: round fold1 has too few clips for 5 folds (4 "
                   "recordings, at most 6 clips a class); using 4 folds\n")
    assert len(folds) == 4
    for train, valid in folds:
        assert not set(table["src_file"].iloc[train]) & set(table["src_file"].iloc[valid])


def test_class_folds_that_cannot_be_cut_name_the_param_and_classes():
    table = uneven_table({"x": 2, "y": 1})
    with pytest.raises(TrainingError, match=r"tune\.folds: no folds can be cut "
                                            r"in round r: too few clips in every class "
                                            r"\(x, y\)"):
        class_folds(table["label"], table["src_file"], 3, 0,
                    param="tune.folds", where="round r")


def test_class_folds_without_small_classes_are_scikit_learns():
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    table = uneven_table({"a": 12, "b": 10, "c": 9}, per_recording=3)
    labels, groups = table["label"], table["src_file"]
    ours = class_folds(labels, groups, 3, 7, param="p", where="w")
    theirs = StratifiedGroupKFold(3, shuffle=True, random_state=7).split(table, labels, groups)
    for (a, b), (c, d) in zip(ours, theirs, strict=True):
        assert (a == c).all() and (b == d).all()
    numbered = np.arange(len(table))  # as where no recordings are known: sorted as numbers
    ours = class_folds(labels, numbered, 3, 7, param="p", where="w")
    theirs = StratifiedGroupKFold(3, shuffle=True, random_state=7).split(table, labels, numbered)
    for (a, b), (c, d) in zip(ours, theirs, strict=True):
        assert (a == c).all() and (b == d).all()
    ours = class_folds(labels, None, 3, 7, param="p", where="w")
    theirs = StratifiedKFold(3, shuffle=True, random_state=7).split(table, labels)
    for (a, b), (c, d) in zip(ours, theirs, strict=True):
        assert (a == c).all() and (b == d).all()


def test_a_class_all_in_one_fold_is_kept_in_training_and_named(capsys, monkeypatch):
    """StratifiedGroupKFold spreads a class's recordings when it can; where it cannot (here
    forced on the first cut), the class moves to every training side and the cut is redone."""
    from sklearn.model_selection import StratifiedGroupKFold

    import soundclf.evaluation.folds

    table = uneven_table({"a": 12, "b": 12, "c": 12, "pair": 6}, per_recording=2)  # 3 each
    labels, groups = table["label"].to_numpy(), table["src_file"].to_numpy()
    cuts = []

    class FirstCutLumpsPair(StratifiedGroupKFold):
        def split(self, X, y, groups):
            cuts.append(sorted(set(y)))
            if len(cuts) > 1:
                yield from super().split(X, y, groups)
                return
            pair = np.flatnonzero(np.asarray(y) == "pair")
            others = np.flatnonzero(np.asarray(y) != "pair")
            for k in range(self.n_splits):
                valid = others[k::self.n_splits]
                if k == 0:
                    valid = np.concatenate([valid, pair])
                yield np.setdiff1d(np.arange(len(y)), valid), np.sort(valid)

    monkeypatch.setattr(soundclf.evaluation.folds, "StratifiedGroupKFold", FirstCutLumpsPair)
    folds = class_folds(labels, groups, 3, 0, param="tune.folds",
                        where="round fold5")
    assert capsys.readouterr().out == (
        "tune.folds: class(es) whose recordings all fell in one fold in "
        "round fold5 kept in training only: pair\n")
    assert cuts == [["a", "b", "c", "pair"], ["a", "b", "c"]]
    for train, valid in folds:
        assert set(labels[train]) == {"a", "b", "c", "pair"}
        assert "pair" not in set(labels[valid])


def test_tune_inner_folds_on_tiny_classes(capsys):
    train = uneven_table(SIZES).drop(columns="src_file")  # FreeSound: no recordings, no folds
    folds = inner_folds(train, 4, seed=42, where="round seed42")
    assert "tune.folds: class(es) with fewer than 4 clips in round seed42 kept in training " \
           "only: one, three, two" in capsys.readouterr().out
    validated = np.vstack(list(folds.values())).any(axis=0)
    assert set(train.loc[validated, "label"]) == {"big", "mid"}
    assert set(train.loc[~validated, "label"]) == {"one", "two", "three"}


def test_early_stopping_keeps_a_single_recording_class_in_training(capsys):
    table = uneven_table({"a": 20, "b": 20, "solo": 3}, per_recording=3)  # solo: 1 recording
    watched = early_stopping_rows(table["label"], table["src_file"], 0.25, seed=0)
    assert "class(es) with fewer than 2 recordings in the training part kept in training " \
           "only: solo" in capsys.readouterr().out
    assert "solo" not in set(table["label"].iloc[watched])
    assert {"a", "b"} <= set(table["label"].iloc[watched])


def test_a_model_that_never_saw_a_class_gives_it_probability_zero():
    from sklearn.svm import LinearSVC

    table = uneven_table({"a": 10, "b": 10, "c": 10, "d": 10})
    seen = table["label"] != "c"
    x, y = table[FEATURES].to_numpy(), table["label"].to_numpy()
    model = LinearSVC().fit(x[seen], y[seen])
    probs = class_probabilities(model, x, np.array(["a", "b", "c", "d"]))
    assert (probs[:, 2] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-12)
    scores = model.decision_function(x)  # the softmax of the decision values: the same order
    assert (probs[:, [0, 1, 3]].argmax(axis=1) == scores.argmax(axis=1)).all()


def test_out_of_fold_probabilities_and_the_ensemble_on_one_two_and_three_clip_classes(capsys):
    """Inner folds cut over classes of fewer clips than folds: those stay in training (no
    out-of-fold row), every row has every class's column, and the ensemble learns from it."""
    table = uneven_table({**SIZES, "big2": 12}, seed=3).drop(columns="src_file")
    table["split"] = "train"
    for _, group in table.groupby("label"):  # a third of the larger classes validated
        table.loc[group.index[: len(group) // 3], "split"] = "valid"
    rnd = Round("seed42", table, FEATURES)
    params = {**PARAMS, "oof": {"folds": None, "epochs": 1.0}, "tune": TUNE}
    results = [fit_round(get(m), params, rnd, out_of_fold=True)[1] for m in ("svc", "nn-2layer")]
    assert ("tune.folds: class(es) with fewer than 4 clips in round seed42 kept in training "
            "only: one, three, two") in capsys.readouterr().out
    member = probabilities_table([results[0]])
    oof = member[member["split"] == "train"]
    assert set(oof["label"]) == {"big", "big2", "mid"}
    assert list(member.columns[5:]) == [f"p_{c}" for c in sorted(SIZES | {"big2": 12})]
    tables = {"svc": member, "nn-2layer": probabilities_table([results[1]])}
    parts = {m: t.sort_values(["split", "filename"]).reset_index(drop=True)
             for m, t in tables.items()}
    ensemble = {"members": ["svc", "nn-2layer"], "combine": "weighted"}
    fitted, result = fit_ensemble({**params, "ensemble": ensemble},
                                  MemberRound("seed42", parts, list(member.columns[5:])))
    assert (result.predicted == rnd.rows("valid").sort_values("filename")["label"]).mean() > 0.6
    assert all(w >= 0 for w in fitted.described().values())


def test_freesound_split_keeps_tiny_classes_in_training_when_validation_is_too_small(capsys):
    sizes = {f"c{k:02d}": 1 + k % 5 for k in range(20)}  # 1..5 clips, 60 in all
    meta = uneven_table(sizes)[["filename", "label"]]
    params = {"data": {"freesound": {"valid_size": 0.2, "split_seed": 42, "repeats": 1}}}
    is_valid = FreeSound().validation_mask(meta, params)
    out = capsys.readouterr().out
    singles = sorted(c for c, n in sizes.items() if n == 1)
    assert f"4 class(es) with a single clip kept in training only (cannot be stratified): " \
           f"{', '.join(singles)}" in out
    # 56 clips in 16 classes: 12 validation clips for 16 classes; without the 2-clip classes
    # 10 for 12, without the 3-clip ones too 8 for 8 (a 4-clip class is 0.8 of a clip: kept)
    kept = sorted(c for c, n in sizes.items() if n in (2, 3))
    assert (f"freesound: data.freesound.valid_size 0.2 gives fewer validation clips than "
            f"classes; 8 smallest class(es) kept in training only: {', '.join(kept)}\n") in out
    validated = set(meta.loc[is_valid, "label"])
    assert validated == {c for c, n in sizes.items() if n >= 4}
    assert is_valid.sum() == 8  # ceil(0.2 * 36), one clip of each class left


def test_round_classes_without_training_clips_are_named():
    labels = pd.Series(["a", "a", "b", "c", "c"])
    assert untrained_classes(labels, np.array([False, True, True, False, True])) == ["b"]


def test_esc10_reads_the_esc10_rows_of_the_esc50_archive(esc50_zip, tmp_path):
    import zipfile

    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path)
    listed = ESC10().listed(tmp_path)
    assert len(listed) == len(ESC50().listed(tmp_path)) == 60
    meta = ESC10().metadata(tmp_path)
    assert set(meta["label"]) == {"dog", "rooster"} and len(meta) == 30  # esc10: classes 0, 1
    params = {"data": {"esc10": {"valid_fold": 2, "cv": True}, "esc50": {"valid_fold": 5,
                                                                          "cv": False}}}
    rounds = ESC10().rounds(meta, params)
    assert list(rounds) == ["fold2", "fold1", "fold3", "fold4", "fold5"]
    assert list(ESC50().rounds(ESC50().metadata(tmp_path), params)) == ["fold5"]


def test_nn_watching_a_class_its_training_lacks(tmp_path):
    """A round whose validation has a class that training lacks (all its recordings in
    one fold): the NN has an output for it and trains; it just never predicts it."""
    table = uneven_table({"a": 20, "b": 20, "c": 20, "late": 4})
    table["split"] = np.where((np.arange(len(table)) % 5 == 0) | (table["label"] == "late"),
                              "valid", "train")
    rnd = Round("fold5", table, FEATURES)
    nn, result = fit_predict(get("nn-2layer").build(PARAMS, FEATURES), rnd)
    assert list(nn.classes_) == ["a", "b", "c"]  # what it answers for: the classes trained on
    assert nn.model_.layers[-1][0].out_features == 4  # and an output for the watched one
    assert "late" in set(rnd.xy("valid")[1]) and "late" not in set(result.predicted)


def test_a_recording_of_two_classes_stays_on_one_side_of_every_cut():
    """As in the official ESC-50 file, recordings that give clips to two classes: the
    inner folds and early stopping's carved set keep all their clips together."""
    table = uneven_table({"a": 12, "b": 12, "c": 12}, per_recording=2)
    for k in range(3):  # a-k's recording also gives b's clips 2k, 2k+1 (two classes)
        table.loc[(table["label"] == "b") & (table["src_file"] == f"b-{k}"), "src_file"] = f"a-{k}"
    labels, groups = table["label"].to_numpy(), table["src_file"].to_numpy()
    cuts = [valid for _, valid in class_folds(labels, groups, 3, 0, param="p", where="w")]
    cuts.append(early_stopping_rows(labels, groups, 0.25, seed=0))
    for valid in cuts:
        inside = set(groups[valid])
        outside = set(groups[np.setdiff1d(np.arange(len(groups)), valid)])
        assert not inside & outside
    shared = {f"a-{k}" for k in range(3)}
    assert any(shared & set(groups[valid]) for valid in cuts)  # they were validated on
