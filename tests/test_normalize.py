"""Scalers are fitted on the training split only and the split follows the params."""

import numpy as np
import pandas as pd
import pytest

from stages.datasets import ESC50
from stages.normalize import normalize
from stages.params import ParamError
from tests.conftest import separable_table


def features_table():
    table = separable_table().drop(columns="split")
    table["fold"] = np.arange(len(table)) % 5 + 1
    return table


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
    params = {"data": {"esc50": {"valid_fold": 2}}}
    assert (ESC50().validation_mask(table, params) == (table["fold"] == 2)).all()
    params["data"]["esc50"]["valid_fold"] = 7
    with pytest.raises(ParamError, match=r"'data\.esc50\.valid_fold' must be one of .*\[1, 2, 3"):
        ESC50().validation_mask(table, params)


def test_empty_split_is_rejected():
    table = features_table()
    with pytest.raises(ParamError, match="no validation clips"):
        normalize(table, np.zeros(len(table), bool), "standard")
