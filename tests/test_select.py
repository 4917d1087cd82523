"""scripts/select_config.py: inner CV on the training folds only, best candidate and command."""

import json

import numpy as np
import pytest
import yaml

from scripts.select_config import main
from tests.conftest import REPO, separable_table


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A features table in ESC-50's layout (5 folds, 2 clips per recording) and params."""
    table = separable_table(n_per_class=40).drop(columns="split")
    table.insert(2, "fold", np.arange(len(table)) // 2 % 5 + 1)
    table.insert(3, "src_file", [f"rec{i // 2}" for i in range(len(table))])
    table.to_parquet(tmp_path / "features.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["nn"].update(layers=[16], epochs=3, batch_size=16, lr=0.01)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path, table


SVC_GRID = ["--grid", "svc.C=0.000001,1.0", "--grid", "normalize.scaler=none,standard"]


def test_best_candidate_by_inner_cv_never_using_the_held_out_fold(project, capsys):
    path, table = project
    summary = main(["esc50", "--features", "features.parquet", "--model", "svc",
                    "--out", "a.json", *SVC_GRID])
    assert summary["inner_rounds"] == ["fold1", "fold2", "fold3", "fold4"]  # fold 5 held out
    assert summary["held_out_clips"] == 24 and len(summary["candidates"]) == 4
    for c in summary["candidates"]:
        accuracies = [r["accuracy"] for r in c["rounds"].values()]
        assert c["accuracy"] == pytest.approx(np.mean(accuracies))
        assert c["std"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    best = max(summary["candidates"], key=lambda c: c["accuracy"])
    assert summary["best"] == best["overrides"]
    assert min(c["accuracy"] for c in summary["candidates"]) < best["accuracy"]
    chosen = best["overrides"]
    written = {1e-6: "0.000001", 1.0: "1.0"}[chosen["svc.C"]]  # positional, not 1e-06
    assert summary["command"] == (f"dvc exp run -n selected-svc -S 'svc.C={written}' "
                                  f"-S 'normalize.scaler={chosen['normalize.scaler']}'")
    assert summary["command"] in capsys.readouterr().out
    assert json.loads((path / "a.json").read_text()) == json.loads(json.dumps(summary))

    # scrambling the held-out fold changes nothing: it is never read for the choice
    scrambled = table.copy()
    fold5 = scrambled["fold"] == 5
    features = scrambled.columns.str.startswith("stft_")
    scrambled.loc[fold5, features] = np.random.default_rng(0).normal(
        size=(fold5.sum(), features.sum())).astype(np.float32)
    scrambled.loc[fold5, "label"] = "class_0"
    scrambled.to_parquet(path / "features.parquet")
    again = main(["esc50", "--features", "features.parquet", "--model", "svc",
                  "--out", "b.json", *SVC_GRID])
    assert again == summary


def test_nn_candidates_and_a_bad_grid_value(project):
    summary = main(["esc50", "--features", "features.parquet", "--grid", "nn.ps=0,0.25"])
    assert summary["model"] == "nn-2layer" and len(summary["candidates"]) == 2
    assert all(c["accuracy"] > 0.5 for c in summary["candidates"])  # chance is 1/3
    with pytest.raises(Exception, match=r"'nn\.ps' must be a probability in \[0, 1\); got 2"):
        main(["esc50", "--features", "features.parquet", "--grid", "nn.ps=0,2"])


def test_missing_features_table_says_which_stage_makes_it(project):
    with pytest.raises(SystemExit, match=r"data/features/esc50\.parquet is missing: run "
                                         r"`dvc repro feature-extraction@esc50` first"):
        main(["esc50"])
