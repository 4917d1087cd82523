"""Feature scaling, fitted on each evaluation round's training clips only.

Every round of a dataset's split (soundclf.data.datasets) gets its own scaler, so no
statistics of a validation fold reach its training; the rounds' scaled copies of the table
are stacked, marked by ``round`` and ``split`` columns. ``normalize.scaler: none`` keeps
the features as they are (the original configuration) with an identity transformer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

from soundclf.params import SCALERS, ParamError
from soundclf.table import feature_columns

SCALER_CLASSES = {
    "none": FunctionTransformer,
    "standard": StandardScaler,
    "minmax": MinMaxScaler,
    "robust": RobustScaler,
}


assert set(SCALER_CLASSES) == set(SCALERS)


def make_scaler(name: str) -> TransformerMixin:
    return SCALER_CLASSES[name]()


def normalize(
    table: pd.DataFrame, is_valid: np.ndarray, scaler_name: str
) -> tuple[pd.DataFrame, TransformerMixin]:
    """The table with a ``split`` column and scaled features, and the fitted scaler."""
    features = feature_columns(list(table.columns))
    is_valid = np.asarray(is_valid, dtype=bool)
    if is_valid.all() or not is_valid.any():
        raise ParamError(
            f"the split leaves {'no training' if is_valid.all() else 'no validation'} clips"
        )
    scaler = make_scaler(scaler_name)
    scaler.fit(table.loc[~is_valid, features].to_numpy())
    scaled = scaler.transform(table[features].to_numpy()).astype(np.float32)
    out = table.drop(columns=features)
    out["split"] = np.where(is_valid, "valid", "train")
    out = pd.concat([out, pd.DataFrame(scaled, columns=features, index=table.index)], axis=1)
    return out, scaler


def untrained_classes(labels: pd.Series, is_valid: np.ndarray) -> list[str]:
    """The classes of a round's validation clips that none of its training clips has."""
    labels = labels.astype(str).to_numpy()
    return sorted(set(labels[is_valid]) - set(labels[~is_valid]))


def normalize_rounds(
    table: pd.DataFrame, rounds: dict[str, np.ndarray], scaler_name: str
) -> tuple[pd.DataFrame, TransformerMixin]:
    """Every round's scaled table, stacked with a ``round`` column; the first round's scaler."""
    parts, scalers = [], []
    for name, is_valid in rounds.items():
        part, scaler = normalize(table, is_valid, scaler_name)
        part.insert(0, "round", name)
        parts.append(part)
        scalers.append(scaler)
    return pd.concat(parts, ignore_index=True), scalers[0]
