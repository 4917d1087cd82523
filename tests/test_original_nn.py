"""scripts/original_nn.py: the original NN call as written scores a random split, not the fold."""

import numpy as np
import pytest

from scripts.original_nn import leaked, original_run
from tests.conftest import separable_table


def table():
    """60 clips, 3 classes, 5 folds; two clips a recording, in the same fold."""
    rows = separable_table(n_per_class=20).drop(columns="split")
    rows["fold"] = np.arange(len(rows)) // 2 % 5 + 1
    rows["src_file"] = [f"rec{i // 2}" for i in range(len(rows))]
    return rows


@pytest.mark.slow  # two fastai trainings
def test_splits_as_written_is_ignored_and_valid_idx_is_the_fold():
    rows = table()
    fold = list(np.flatnonzero(rows["fold"] == 5))
    _, as_written = original_run(rows, [20], seed=0, fold_rows=fold, as_written=True)
    _, by_fold = original_run(rows, [20], seed=0, fold_rows=fold, as_written=False)
    assert sorted(by_fold) == fold
    assert len(as_written) == len(rows) // 5 and sorted(as_written) != fold  # 80/20 at random
    assert leaked(rows, np.array(fold)) == 0
    assert leaked(rows, as_written) > 0  # a recording's two clips on both sides
