"""End to end on ESC-50 alone, in this order: the CNN in the default ensemble,
`soundclf.predict` on what the project trained, `dvc exp run` of cross-validation without
the CNN and of the documented search.

A project of its own (the real dvc.yaml, `datasets: [esc50]`, the synthetic 4-class
archive), so that these experiments run beside test_pipeline's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from soundclf.predict import main as predict
from tests.conftest import REPO
from tests.e2e import MODELS, committed_project, esc50_alone, sh

pytestmark = pytest.mark.slow

WITHOUT_CNN = tuple(m for m in MODELS if m != "cnn")
MEMBERS = WITHOUT_CNN[:-1]  # all but the ensemble


@pytest.fixture(scope="module")
def project(tmp_path_factory, esc50_zip, demo_weights) -> Path:
    repo = committed_project(tmp_path_factory.mktemp("experiments"),
                             esc50_alone(esc50_zip, demo_weights))
    sh("dvc", "repro", cwd=repo)
    return repo


def test_the_cnn_is_an_ensemble_member_by_default(project):
    """The default repro runs the spectrograms and train-cnn stages of every dataset of
    cnn.datasets; the CNN's metrics, curves and confusion plot join the others in compare,
    and the ensemble learns its weight beside the others'."""
    repo = project  # as the fixture left it: the default repro of params.yaml as committed
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble["weights"]) == {"svc", "nn-2layer", "nn-5layer", "pretrained-aisfx",
                                        "cnn"}
    assert ensemble["accuracy"] >= 0.5 and ensemble["n_train"] == 12
    with np.load(repo / "data/spectrograms/esc50.npz") as data:
        assert data["values"].shape == (60, 48, 216) and data["values"].dtype == np.float16
    metrics = json.loads((repo / "metrics/esc50/details/cnn.json").read_text())
    assert metrics["n_valid"] == 12 and metrics["accuracy"] >= 0.5  # chance is 0.25
    assert (repo / "plots/training/esc50/cnn/eval/loss.tsv").is_file()
    assert "| ESC-50 | CNN | [8, 16, 32] | 1 |" in (repo / "metrics/compare.md").read_text()
    assert (repo / "plots/confusion/esc50/cnn.png").is_file()


def test_predict_classifies_recordings_as_each_model_stage_did(project, capsys, monkeypatch):
    """soundclf.predict on the validation clips' audio gives the labels each model's stage
    gave them: a feature model, an NN, the pretrained model, the CNN and the ensemble of
    the two (the experiment before), with the settings recorded in their files; params.yaml,
    edited meanwhile, plays no part. The ensemble's as a user runs it, in a process of its
    own; the others in this one (the same code, without a start of PyTorch each); all from
    the project folder, where the edited params.yaml is."""
    repo = project
    params = (repo / "params.yaml").read_text()
    edited = yaml.safe_load(params)
    edited["features"]["n_mels"] = 64
    edited["spectrograms"]["n_mels"] = 32
    edited["embeddings"]["pooling"] = ["std"]
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    audio = repo / "data/raw/esc50/ESC-50-master/audio"
    monkeypatch.chdir(repo)  # predict's default folders, data/models and data/weights
    try:
        for model in ("svc", "nn-2layer", "pretrained-aisfx", "cnn", "ensemble"):
            stage = pd.read_csv(repo / f"plots/predictions/esc50/{model}.csv")
            clips = [str(audio / f) for f in stage["filename"]]
            out = repo / f"predicted/{model}.csv"
            if model == "ensemble":
                sh(sys.executable, "-m", "soundclf", "predict", "esc50", model, *clips,
                   "--csv", str(out), cwd=repo)
            else:
                predict(["esc50", model, *clips, "--csv", str(out)])
            assert list(pd.read_csv(out)["predicted"]) == list(stage["predicted"]), model
        capsys.readouterr()
        predict(["esc50", "ensemble", clips[0], "--top", "2"])
        shown = capsys.readouterr().out
        assert re.search(rf"^{re.escape(clips[0])}: \w+ [01]\.\d{{3}}, \w+ [01]\.\d{{3}}$",
                         shown, re.M), shown
    finally:
        (repo / "params.yaml").write_text(params)


def test_exp_run_cross_validation_on_one_dataset(project):
    repo = project
    sh("git", "checkout", "--", "params.yaml", cwd=repo)  # as committed
    # early stopping too: its carved set, like the inner folds, keeps the recording
    # that gives clips to two classes (in folds 2 and 3, as in the official file) together;
    # the CNN switched off, as the docs say
    log = sh("dvc", "exp", "run", "-S", "data.esc50.cv=true",
             "-S", "nn.training.early_stopping=5", "-S", "cnn.datasets=[]",
             "-S", f"ensemble.members=[{','.join(MEMBERS)}]", cwd=repo)
    assert log.count("1 recording(s) give clips to different classes in different folds") == 1
    compare = json.loads((repo / "metrics/compare.json").read_text())
    # the CNN no longer runs: the experiment's checkout took its outputs away, its metrics
    # and plots too (its runs stay in the run-cache); compare and details list the others
    assert not (repo / "plots/predictions/esc50/cnn.csv").exists()
    assert not (repo / "data/spectrograms/esc50.npz").exists()
    assert set(compare) == {"esc50"} and set(compare["esc50"]) == set(WITHOUT_CNN)
    assert sorted(p.stem for p in (repo / "metrics/esc50/details").iterdir()) == sorted(
        WITHOUT_CNN)
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert all(set(r["weights"]) == set(MEMBERS) for r in ensemble["rounds"].values())
    normalized = pd.read_parquet(repo / "data/normalized/esc50.parquet",
                                 columns=["round", "split", "filename", "src_file", "label"])
    assert list(normalized["round"].unique()) == ["fold5", "fold1", "fold2", "fold3", "fold4"]
    for name, part in normalized.groupby("round"):
        valid = part[part["split"] == "valid"]
        assert valid["filename"].str.startswith(f"{name[-1]}-").all() and len(valid) == 12
        def recordings(rows):  # what must stay together: a recording's clips of one class
            return set(zip(rows["src_file"], rows["label"], strict=True))
        assert not recordings(valid) & recordings(part[part["split"] == "train"])
    for model in WITHOUT_CNN:
        metrics = json.loads((repo / f"metrics/esc50/details/{model}.json").read_text())
        assert metrics["n_rounds"] == 5 and sorted(metrics["rounds"]) == [
            f"fold{k}" for k in range(1, 6)]
        accuracies = [r["accuracy"] for r in metrics["rounds"].values()]
        assert metrics["accuracy"] == pytest.approx(sum(accuracies) / 5)
        assert metrics["std"]["accuracy"] == pytest.approx(pd.Series(accuracies).std())
        n_train = 12 if model == "ensemble" else 48  # out of fold: 1 inner fold of 4
        assert all(r["n_train"] == n_train and r["n_valid"] == 12
                   for r in metrics["rounds"].values())
        if model.startswith("nn"):  # trained with early stopping on a carved set
            assert all(1 <= r["best_epoch"] <= r["epochs_run"] <= 15
                       for r in metrics["rounds"].values())
        preds = pd.read_csv(repo / f"plots/predictions/esc50/{model}.csv")
        assert len(preds) == 60 and preds["filename"].is_unique  # every clip scored once
        assert compare["esc50"][model]["accuracy"] == pytest.approx(metrics["accuracy"])
        assert compare["esc50"][model]["std"] == pytest.approx(metrics["std"])
    assert re.search(r"\| ESC-50 \| LinearSVC \| - \| 5 \| [\d.]+% ± [\d.]+ \|",
                     (repo / "metrics/compare.md").read_text())


def readme_command(heading: str) -> str:
    """The first command of the docs' section ``heading`` (docs/experiments.md)."""
    section = (REPO / "docs/experiments.md").read_text().split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```bash\n(dvc exp run [^\n]+)\n", section).group(1)


def test_the_search_that_chose_the_defaults_runs_as_the_readme_says(project):
    repo = project
    sh("git", "checkout", "--", "params.yaml", cwd=repo)  # as committed: one round each
    command = readme_command("Hyperparameter search")
    assert command.startswith("dvc exp run -n search ")
    # the documented command as written, its candidates scored on one inner fold instead
    # of two here (the same code, half the fits), without the CNN, which it would retrain
    # for tune.max_folds alone (the CNN's own search is not part of it)
    log = sh("bash", "-c", f"{command} -S tune.max_folds=1 -S 'cnn.datasets=[]' "
             f"-S 'ensemble.members=[{','.join(MEMBERS)}]'", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    candidates = {"svc": params["tune"]["svc"], "nn": params["tune"]["nn"]}
    assert candidates["svc"]["C"] == [0.3, 1.0]
    assert candidates["nn"]["epochs"] == [30, 60] and candidates["nn"]["batch_size"] == [32, 64]
    for model, section in (("svc", "svc"), ("nn-2layer", "nn"), ("nn-5layer", "nn")):
        metrics = json.loads((repo / f"metrics/esc50/details/{model}.json").read_text())
        searched = {k: v for k, v in candidates[section].items() if v is not None}
        assert set(metrics["tuned"]) == set(searched), model  # one value of each list
        assert all(metrics["tuned"][k] in v for k, v in searched.items()), model
        assert 0 < metrics["tuned_accuracy"] <= 1
        assert f"tune.{section} in round fold5: " in log
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert {f"accuracy_{m}" for m in ("svc", "nn-2layer", "nn-5layer")} <= set(ensemble)
    assert "search" in sh("dvc", "exp", "list", cwd=repo)
