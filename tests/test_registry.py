"""The model registry: adding a model is its module, its params section and schema, and its
dvc.yaml block, with nothing else edited.

A toy k-NN model is registered the way the README's developer section says, from a module
file of its own: here in a temporary folder added to the ``soundclf.models`` package (fast),
and, marked slow, written into a copy of the project, run by the real DVC beside the
other models, voted on by the ensemble and listed by compare.
"""

from __future__ import annotations

import json
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from scripts.bench_pipeline import copy_project
from soundclf import models, params
from soundclf.evaluation import tune
from soundclf.evaluation.rounds import Round
from soundclf.reporting.compare import collect, load_predictions
from soundclf.reporting.details import copy_details
from stages import train, train_ensemble
from tests.conftest import REPO
from tests.e2e import changed_stages, sh
from tests.test_train import grouped_table

KNN_MODULE = '''"""k nearest neighbours (the ``knn`` section): a toy model for the tests."""

from sklearn.neighbors import KNeighborsClassifier

from soundclf.models import Model


def build(params, features):
    return KNeighborsClassifier(n_neighbors=params["knn"]["n_neighbors"])


MODELS = [Model("knn", "k-NN", params=("knn",), build=build, tune="knn",
                architecture=lambda params: f"k={params['knn']['n_neighbors']}")]
'''
KNN_SCHEMA = {"knn.n_neighbors": params.integer(1), "tune.knn": params.grid_of("knn")}
KNN_PARAMS = {"knn": {"n_neighbors": 3}, "tune": {"knn": {"n_neighbors": None}}}


@pytest.fixture
def knn_registered(tmp_path, monkeypatch):
    """knn.py in a folder of its own, made part of the soundclf.models package, and its keys
    in the schema."""
    folder = tmp_path / "more_models"
    folder.mkdir()
    (folder / "knn.py").write_text(KNN_MODULE)
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(folder)])
    for key, validator in KNN_SCHEMA.items():
        monkeypatch.setitem(params.SCHEMA, key, validator)
    yield
    sys.modules.pop("soundclf.models.knn", None)


def shipped_params() -> dict:
    loaded = params.read_yaml((REPO / "params.yaml").read_text())
    loaded["knn"] = dict(KNN_PARAMS["knn"])
    loaded["tune"]["knn"] = dict(KNN_PARAMS["tune"]["knn"])
    return loaded


def test_the_registry_lists_every_model_once_in_order():
    found = models.every()
    pretrained = [f"pretrained-{e}" for e in params.ENCODERS]  # one per encoder
    assert list(found) == ["svc", "nn-2layer", "nn-5layer", "cnn", *pretrained,
                           "zeroshot-clap", "ensemble"]
    assert [m.display for m in found.values()] == [
        "LinearSVC", "NN", "NN", "CNN", *["Pretrained embeddings + LogReg"] * len(pretrained),
        "Zero-shot CLAP", "Ensemble"]
    assert [found[p].encoder for p in pretrained] == list(params.ENCODERS)
    with pytest.raises(params.ParamError, match=r"'pretrained' is now pretrained-<encoder>"):
        models.get("pretrained")
    assert models.module_of("nn-5layer") == "soundclf.models.nn"
    assert models.get("nn-5layer") is found["nn-5layer"]
    with pytest.raises(params.ParamError, match=r"no model called 'rf' \(known: svc, "):
        models.get("rf")


def test_a_model_registered_from_its_own_module_is_trained_tuned_voted_and_compared(
        knn_registered, tmp_path, monkeypatch):
    knn = models.get("knn")
    assert list(models.every()) == ["svc", "nn-2layer", "nn-5layer", "cnn",
                                    *[f"pretrained-{e}" for e in params.ENCODERS],
                                    "zeroshot-clap", "ensemble", "knn"]
    table = grouped_table(n_per_class=20)
    features = [c for c in table.columns if c.startswith("stft_")]
    rounds = [table.assign(round=f"fold{k + 1}", split=np.where(
        (np.arange(len(table)) // 4) % 2 == k, "valid", "train")) for k in range(2)]
    pd.concat(rounds).to_parquet(tmp_path / "normalized.parquet")
    config = shipped_params()
    config["tune"]["knn"]["n_neighbors"] = [1, 5]
    config["ensemble"]["members"] = ["svc", "knn"]
    # one process: knn.py is importable here only (the __path__ added above), not in a
    # joblib worker; the dvc test below runs it from soundclf/models/, in parallel
    config["tune"]["n_jobs"] = 1
    params.validate(config)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config))

    # its grid is searched like any model's
    tuned, chosen = tune.search(knn, config, Round("fold1", rounds[0], features))
    assert chosen["tuned"]["n_neighbors"] in (1, 5)
    assert tuned["knn"]["n_neighbors"] == chosen["tuned"]["n_neighbors"]

    monkeypatch.chdir(tmp_path)  # the stage every model uses, as its dvc.yaml block runs it
    train.main(["knn", "normalized.parquet", "knn.joblib", "knn.json",
                "predictions/esc50/knn.csv", "--probabilities", "members/knn.parquet"])
    metrics = json.loads((tmp_path / "knn.json").read_text())
    assert list(metrics["rounds"]) == ["fold1", "fold2"]
    assert all(r["tuned"]["n_neighbors"] in (1, 5) for r in metrics["rounds"].values())
    assert metrics["accuracy"] > 0.9  # separable data, chance 1/3
    assert joblib.load(tmp_path / "knn.joblib").estimator.n_neighbors == metrics["rounds"]["fold1"][
        "tuned"]["n_neighbors"]

    # an ensemble member, by its probabilities (those of the values its search chose)
    train.main(["svc", "normalized.parquet", "svc.joblib", "svc.json",
                "predictions/esc50/svc.csv", "--probabilities", "members/svc.parquet"])
    train_ensemble.main(["members", "ensemble.joblib", "ensemble.json", "ensemble.csv"])
    ensemble = json.loads((tmp_path / "ensemble.json").read_text())
    assert set(ensemble["rounds"]["fold1"]["weights"]) == {"svc", "knn"}
    assert ensemble["rounds"]["fold1"]["accuracy_knn"] == metrics["rounds"]["fold1"]["accuracy"]

    # a row of compare's table, after the other models'
    config["datasets"] = ["esc50"]
    rows = collect(load_predictions(tmp_path / "predictions", config), config)
    assert list(rows["model"]) == ["svc", "knn"]
    assert rows.iloc[1][["display", "architecture"]].tolist() == ["k-NN", "k=3"]
    assert rows.iloc[1]["accuracy"] == pytest.approx(metrics["accuracy"])

    # a model whose stage no longer runs for the dataset (the CNN outside cnn.datasets):
    # the predictions it left are not read; where it runs, they are
    stale = tmp_path / "predictions/esc50/cnn.csv"
    stale.write_bytes((tmp_path / "predictions/esc50/svc.csv").read_bytes())
    config["cnn"]["datasets"] = []
    assert ("esc50", "cnn") not in load_predictions(tmp_path / "predictions", config)
    config["cnn"]["datasets"] = ["esc50"]
    assert ("esc50", "cnn") in load_predictions(tmp_path / "predictions", config)


def test_details_copies_the_figures_of_the_models_that_run(tmp_path):
    """The details stage's copy into git: the dataset's files and every running model's
    figures; a file the CNN left outside cnn.datasets stays out, a missing count is named."""
    results, metrics = tmp_path / "results", tmp_path / "metrics"
    results.mkdir()
    for name in ("dataset.json", "features.json", "svc.json", "knn.json", "cnn.json"):
        (results / name).write_text(f'{{"file": "{name}"}}')
    (results / "skipped.csv").write_text("filename,error\n")
    config = {"datasets": ["esc50"], "cnn": {"datasets": []}}
    copied = copy_details(results, metrics, "esc50", config)
    assert sorted(copied) == ["dataset.json", "details/svc.json", "features.json",
                              "skipped.csv"]  # knn.json: no such model registered
    assert (metrics / "details/svc.json").read_text() == '{"file": "svc.json"}'
    config["cnn"]["datasets"] = ["esc50"]
    copy_details(results, metrics, "esc50", config)
    assert sorted(p.name for p in (metrics / "details").iterdir()) == ["cnn.json", "svc.json"]
    config["cnn"]["datasets"] = []  # switched off again: its copy goes too
    copy_details(results, metrics, "esc50", config)
    assert sorted(p.name for p in (metrics / "details").iterdir()) == ["svc.json"]
    (results / "features.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"results/features.json is missing"):
        copy_details(results, metrics, "esc50", config)


# the stages of the other models and their inputs, which the new model does not need
LEFT_OUT = ("train-nn-2layer", "train-nn-5layer", "weights", "embeddings", "train-pretrained")


@pytest.mark.slow
def test_adding_a_model_as_the_readme_says_runs_it_through_dvc(tmp_path, esc50_zip):
    """The README's recipe, followed literally in a copy of the project: the module, the
    params section and schema, the dvc.yaml block; then `dvc repro`."""
    repo = tmp_path / "project"
    copy_project(repo)
    (repo / "soundclf/models/knn.py").write_text(KNN_MODULE)  # 1. the module
    config = yaml.safe_load((repo / "params.yaml").read_text())  # 2. the params section
    config.update(datasets=["esc50"], knn=KNN_PARAMS["knn"])
    config["cnn"]["datasets"] = []  # not the recipe's: the CNN runs in test_pipeline
    config["tune"]["knn"] = KNN_PARAMS["tune"]["knn"]
    config["data"]["esc50"]["url"] = str(esc50_zip)
    config["features"]["n_jobs"] = 2
    config["ensemble"]["members"] = ["svc", "knn"]
    (repo / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    schema = (repo / "soundclf/params.py").read_text()  # ... and its schema
    anchor = '    "tune.folds": integer(2),\n'
    assert anchor in schema
    (repo / "soundclf/params.py").write_text(schema.replace(anchor, (
        '    "knn.n_neighbors": integer(1),\n    "tune.knn": grid_of("knn"),\n' + anchor)))
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())  # 3. the dvc.yaml block
    block = json.loads(json.dumps(pipeline["stages"]["train-svc"]).replace("svc", "knn")
                       .replace("LinearSVC", "k-NN"))
    pipeline["stages"]["train-knn"] = block
    for stage in LEFT_OUT:  # not the recipe's: run end to end in test_pipeline
        del pipeline["stages"][stage]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    assert block["do"]["cmd"].startswith("python -m stages.train knn ")
    assert "soundclf/models/knn.py" in block["do"]["deps"]

    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "project with a k-NN", cwd=repo)
    log = sh("dvc", "repro", cwd=repo)
    assert "Running stage 'train-knn@esc50'" in log
    metrics = json.loads((repo / "metrics/esc50/details/knn.json").read_text())
    assert metrics["accuracy"] >= 0.75 and metrics["n_valid"] == 12  # chance 0.25
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble) >= {"accuracy_svc", "accuracy_knn"}  # a member by params alone
    table = (repo / "metrics/compare.md").read_text()
    assert "| ESC-50 | k-NN | k=3 | 1 |" in table
    assert "| ESC-50 | Ensemble | svc + knn | 1 |" in table
    assert (repo / "plots/confusion/esc50/knn.png").is_file()

    # an edit to the new module reruns what reads it, nothing else
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "results", cwd=repo)
    with open(repo / "soundclf/models/knn.py", "a") as module:
        module.write("# an edit\n")
    changed = changed_stages(repo)
    # (details and compare read the registry, for the models that run on a dataset)
    assert changed == {"train-knn", "train-ensemble", "details", "compare"}, changed
