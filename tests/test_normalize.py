"""Scalers are fitted on the training split only and the split follows the params."""

import numpy as np
import pandas as pd
import pytest

from soundclf.data.datasets import ESC50, LayoutError
from soundclf.features.scaling import normalize, normalize_rounds
from soundclf.params import ParamError
from tests.conftest import separable_table


def features_table():
    """90 clips in 5 folds; two clips are cut from each recording, in the same fold."""
    table = separable_table().drop(columns="split")
    table["fold"] = np.arange(len(table)) // 2 % 5 + 1
    table["src_file"] = [f"rec{i // 2}" for i in range(len(table))]
    return table


def esc50_params(valid_fold: int = 5, cv: bool = False) -> dict:
    return {"data": {"esc50": {"valid_fold": valid_fold, "cv": cv}}}


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_scaler_is_fitted_on_train_only(scaler):
    table = features_table()
    is_valid = (table["fold"] == 5).to_numpy()
    table.loc[is_valid, "stft_mean_0"] += 1000.0  # a shift seen only in validation
    out, fitted = normalize(table, is_valid, scaler)
    train = out.loc[out["split"] == "train", "stft_mean_0"]
    valid = out.loc[out["split"] == "valid", "stft_mean_0"]
    if scaler == "standard":
        assert abs(train.mean()) < 1e-5 and abs(train.std(ddof=0) - 1) < 1e-4
    if scaler == "minmax":
        assert train.min() == pytest.approx(0) and train.max() == pytest.approx(1)
    assert valid.min() > train.max(), "validation rows transformed with train statistics"
    expected = fitted.transform(table.loc[is_valid, [c for c in table if "stft" in c]].to_numpy())
    np.testing.assert_allclose(out.loc[is_valid, "stft_mean_0"], expected[:, 0], rtol=1e-6)


def test_none_keeps_raw_values_and_metadata():
    table = features_table()
    is_valid = (table["fold"] == 5).to_numpy()
    out, _ = normalize(table, is_valid, "none")
    pd.testing.assert_frame_equal(out[table.columns], table, check_dtype=False)
    assert (out["split"] == np.where(is_valid, "valid", "train")).all()


def test_esc50_split_uses_valid_fold_and_rejects_unknown_fold():
    table = features_table()
    params = esc50_params(valid_fold=2)
    assert (ESC50().validation_mask(table, params) == (table["fold"] == 2)).all()
    assert list(ESC50().rounds(table, params)) == ["fold2"]
    params["data"]["esc50"]["valid_fold"] = 7
    with pytest.raises(ParamError, match=r"'data\.esc50\.valid_fold' must be one of .*\[1, 2, 3"):
        ESC50().validation_mask(table, params)


def test_cv_gives_five_folds_of_disjoint_recordings_each_with_its_own_scaler():
    table = features_table()
    table.loc[table["fold"] == 3, "stft_mean_0"] += 100.0  # fold 3 differs from the rest
    rounds = ESC50().rounds(table, esc50_params(valid_fold=2, cv=True))
    assert list(rounds) == ["fold2", "fold1", "fold3", "fold4", "fold5"]  # the primary first
    assert (np.sum(list(rounds.values()), axis=0) == 1).all()  # each clip validated once
    out, scaler = normalize_rounds(table, rounds, "standard")
    assert list(out["round"].unique()) == list(rounds) and len(out) == 5 * len(table)
    for name, part in out.groupby("round"):
        train, valid = part[part["split"] == "train"], part[part["split"] == "valid"]
        assert (valid["filename"].to_numpy() == table.loc[rounds[name], "filename"]).all()
        assert not set(train["src_file"]) & set(valid["src_file"])
        # the scaler is fitted on this round's training clips: standard there, not elsewhere
        assert abs(train["stft_mean_0"].mean()) < 1e-4
        assert abs(train["stft_mean_0"].std(ddof=0) - 1) < 1e-3
    fold3 = out[(out["round"] == "fold3") & (out["split"] == "valid")]
    assert fold3["stft_mean_0"].min() > 10, "fold 3 scaled with statistics without it"
    primary = out[out["round"] == "fold2"]
    raw = table[[c for c in table if c.startswith("stft")]].to_numpy()
    np.testing.assert_allclose(scaler.transform(raw)[:, 0], primary["stft_mean_0"], rtol=1e-5)


def test_a_recording_of_one_class_spread_over_folds_is_refused():
    table = features_table()
    table.loc[0, "fold"] = 4  # rec0's two clips (one class) now in folds 1 and 4
    with pytest.raises(LayoutError, match=r"1 recording\(s\) have clips of one class in several "
                                          r"folds.*rec0 class_0 \(folds 1, 4\).*"
                                          "ESC-50-master/meta/esc50.csv"):
        ESC50().rounds(table, esc50_params())


def test_a_recording_giving_two_classes_clips_in_two_folds_is_taken_as_official(capsys):
    """As 131943 in the official file: clock_tick in fold 2, clock_alarm in fold 3."""
    table = features_table()
    other = table.index[(table["fold"] == 3) & (table["label"] != table.loc[0, "label"])][0]
    table.loc[other, "src_file"] = "rec0"  # rec0: class_0 in fold 1, another class in fold 3
    rounds = ESC50().rounds(table, esc50_params(cv=True))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "1 recording(s) give clips to different classes in " \
        "different folds" in out and "rec0 (folds 1, 3)" in out
    assert len(rounds) == 5 and (np.sum(list(rounds.values()), axis=0) == 1).all()


def test_empty_split_is_rejected():
    table = features_table()
    with pytest.raises(ParamError, match="no validation clips"):
        normalize(table, np.zeros(len(table), bool), "standard")

