"""End to end: the real dvc.yaml, `dvc repro` and `dvc exp run` on synthetic archives.

The project is copied into a temporary git repository, params.yaml is pointed at a
synthetic ESC-50-master.zip and synthetic FSDKaggle2019 zips, and DVC runs every stage of
both datasets for real. Experiments on ESC-50 alone (the CNN, predict, cross-validation,
the search) are in test_experiments, on a project of their own, so that the two run in
parallel.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.e2e import (
    MODELS,
    changed_stages,
    committed_project,
    ran_stages,
    sh,
    small_training,
    train_stage,
    up_to_date,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, esc50_zip, freesound_zips, demo_weights) -> tuple[Path, str]:
    def edit(params: dict) -> None:
        assert params["datasets"] == ["esc50", "freesound"]
        params["data"]["esc50"]["url"] = str(esc50_zip)
        params["data"]["freesound"]["audio_url"] = freesound_zips[0].as_uri()
        params["data"]["freesound"]["meta_url"] = str(freesound_zips[1])
        params["weights"]["aisfx"] = demo_weights
        small_training(params)

    repo = committed_project(tmp_path_factory.mktemp("project"), edit)
    return repo, sh("dvc", "repro", cwd=repo)


def test_repro_produces_metrics_predictions_and_plots(project):
    repo, log = project
    for model in MODELS:
        assert f"Running stage '{train_stage(model, 'esc50')}'" in log
        metrics = json.loads((repo / f"metrics/esc50/details/{model}.json").read_text())
        # the ensemble's training clips: the out-of-fold ones, the first oof.folds (1) of 4
        assert metrics["n_train"] == (12 if model == "ensemble" else 48)
        assert metrics["n_valid"] == 12 and metrics["n_classes"] == 4
        assert metrics["accuracy"] >= 0.75, (model, metrics)  # chance is 0.25
        for key in ("balanced_accuracy", "f1_weighted", "f1_macro"):
            assert 0 <= metrics[key] <= 1
        preds = pd.read_csv(repo / f"plots/predictions/esc50/{model}.csv")
        assert list(preds.columns) == ["filename", "round", "actual", "predicted"]
        assert (preds["round"] == "fold5").all() and "rounds" not in metrics
        assert len(preds) == 12 and set(preds["actual"]) == {"dog", "rooster", "rain",
                                                             "sea_waves"}
        assert preds["filename"].str.startswith("5-").all()  # fold 5 is validation
    for model in ("nn-2layer", "nn-5layer"):
        curve = pd.read_csv(repo / f"plots/training/esc50/{model}/eval/loss.tsv", sep="\t")
        assert list(curve["step"]) == list(range(15))

    features = pd.read_parquet(repo / "data/features/esc50.parquet")
    assert features.shape == (60, 4 + 2474)
    assert list(features.columns[:4]) == ["filename", "label", "fold", "src_file"]
    # the pretrained model's inputs: the checkpoint verified once, every clip embedded
    assert "Running stage 'weights@aisfx'" in log and "weights aisfx: verified" in log
    for dataset, clips in (("esc50", 60), ("freesound", 46)):  # FreeSound: 0.3 to 30 s
        with np.load(repo / f"data/embeddings/{dataset}/aisfx.npz") as embedded:
            assert embedded["values"].shape == (clips, 2 * (256 + 512))
            assert np.isfinite(embedded["values"]).all()
            assert set(embedded["filename"]) == set(pd.read_parquet(
                repo / f"data/features/{dataset}.parquet")["filename"])

    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert set(compare["esc50"]) == set(MODELS)
    table = (repo / "metrics/compare.md").read_text()
    assert "| ESC-50 | NN | [200, 100] | 1 |" in table and "52.75%" in table
    assert ("| ESC-50 | Ensemble | svc + nn-2layer + nn-5layer + pretrained-aisfx + cnn | 1 |"
            in table)
    assert "| ESC-50 | Pretrained embeddings + LogReg | aisfx [3, 4] | 1 |" in table
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    members = ("svc", "nn-2layer", "nn-5layer", "pretrained-aisfx", "cnn")
    assert {f"accuracy_{m}" for m in members} <= set(ensemble)
    # one inner fold (oof.folds 1): no inner accuracy, which needs two
    assert set(ensemble["weights"]) == set(members) and "inner_accuracy" not in ensemble
    for model in members:  # what the ensemble learned from: every member's probabilities
        probs = pd.read_parquet(repo / f"data/ensemble/esc50/{model}.parquet")
        assert (probs["split"] == "train").sum() == 12 and (probs["split"] == "valid").sum() == 12
        assert set(probs.loc[probs["split"] == "train", "fold"]) == {"fold1"}
        assert (probs.loc[probs["split"] == "valid", "filename"].str.startswith("5-")).all()
    assert (repo / "plots/compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (repo / "data/models/esc50/scaler.joblib").is_file()

    compare_md = (repo / "metrics/compare.md").read_text()
    assert "| FreeSound | NN | [200, 100] |" in compare_md and "1.06%" in compare_md
    for name in ("ESC-50", "FreeSound"):  # the LinearSVC vs best NN summary
        assert re.search(rf"\| {name} \| [\d.]+% \| [\d.]+% \(\[[\d, ]+\]\) "
                         r"\| [+-][\d.]+ points \| (NN|LinearSVC|tie) \|", compare_md)

    assert up_to_date(repo)
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo))
    files = next(iter(shown.values()))["data"]
    # at a glance: the scores of every dataset and model, and nothing else
    assert set(files) == {f"metrics/{d}/{m}.json" for d in ("esc50", "freesound")
                          for m in MODELS}
    for path, shown_file in files.items():
        folder, name = path.rsplit("/", 1)
        details = json.loads((repo / folder / "details" / name).read_text())
        scores = {k: details[k] for k in ("accuracy", "balanced_accuracy", "f1_weighted",
                                          "f1_macro")}
        assert shown_file["data"] == scores, path  # the details hold every other figure
    sh("dvc", "plots", "show", "-o", str(repo / "plots_html"), cwd=repo)
    assert (repo / "plots_html/index.html").is_file()


def test_forced_rerun_gives_identical_results(project):
    repo, _ = project
    assert json.loads((repo / "metrics/esc50/features.json").read_text()) == {
        "clips": 60, "skipped": 0}
    rerun = [m for m in MODELS if m != "nn-5layer"]  # every family; nn-5layer is nn-2layer's
    outputs = [f"metrics/esc50/{m}.json" for m in rerun] + [
        f"plots/predictions/esc50/{m}.csv" for m in rerun] + [
        f"data/probabilities/esc50/{m}.parquet" for m in rerun if m != "ensemble"]
    before = {path: (repo / path).read_bytes() for path in outputs}
    sh("dvc", "repro", "-f", "-s", *[train_stage(m, "esc50") for m in rerun], cwd=repo)
    assert {path: (repo / path).read_bytes() for path in outputs} == before


def test_failed_download_keeps_the_previous_dataset(project):
    """The stage's outputs are cached, not persistent (so that the run-cache can restore
    them): DVC removes the old dataset from the workspace before the stage runs and keeps
    it in its cache, and the failed stage writes nothing half-done in its place."""
    repo, _ = project
    raw = repo / "data/raw/esc50"
    before = sorted((p.relative_to(raw), p.stat().st_size) for p in raw.rglob("*"))
    params = (repo / "params.yaml").read_text()
    bad = yaml.safe_load(params)
    bad["data"]["esc50"]["url"] = str(repo / "no-such-archive.zip")
    (repo / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    try:
        log = sh("dvc", "repro", "download@esc50", cwd=repo, ok=False)
    finally:
        (repo / "params.yaml").write_text(params)
    assert "data.esc50.url: " in log and "no-such-archive.zip does not exist" in log
    assert "dvc checkout download@esc50" in log  # how to have the previous one back
    assert not raw.exists() or not any(raw.iterdir())
    sh("dvc", "checkout", "download@esc50", cwd=repo)
    assert sorted((p.relative_to(raw), p.stat().st_size) for p in raw.rglob("*")) == before
    # the failed run's index (of the bad source) is rewritten by the next repro, which then
    # finds the restored dataset current: nothing else runs
    assert ran_stages(sh("dvc", "repro", cwd=repo)) == set()
    assert up_to_date(repo)


def test_freesound_runs_in_the_same_repro(project):
    repo, log = project
    counts = json.loads((repo / "metrics/freesound/dataset.json").read_text())
    assert counts == {"clips_listed": 49, "clips_used": 46, "clips_excluded": 3, "classes": 5}
    for model in MODELS:
        assert f"Running stage '{train_stage(model, 'freesound')}'" in log
        metrics = json.loads((repo / f"metrics/freesound/details/{model}.json").read_text())
        n_train = 9 if model == "ensemble" else 36  # out of fold: 1 of tune.folds' 4
        assert (metrics["n_train"], metrics["n_valid"], metrics["n_classes"]) == (n_train, 10, 5)
        assert metrics["balanced_accuracy"] >= 0.6, (model, metrics)  # chance is 0.2
        preds = pd.read_csv(repo / f"plots/predictions/freesound/{model}.csv")
        assert len(preds) == 10 and preds["predicted"].nunique() > 1
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert set(compare) == {"esc50", "freesound"}


def test_exp_run_reruns_only_what_the_param_touches(project):
    repo, _ = project
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "results", cwd=repo)
    # a training setting of nn.training: both NN stages (then what reads them), not the svc
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("    epochs: 15\n", "    epochs: 14\n", 1))
    changed = changed_stages(repo)
    sh("git", "checkout", "--", "params.yaml", cwd=repo)
    assert changed == {"train-nn-2layer", "train-nn-5layer"}, changed
    # the pooling of the embeddings: their stage only, and its cache computes nothing
    params = yaml.safe_load(text)
    params["embeddings"]["pooling"] = ["mean"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = changed_stages(repo)
    # the embeddings, and the model whose file records how they are computed
    assert changed == {"embeddings", "train-pretrained"}, changed
    log = sh("dvc", "repro", "embeddings@esc50-aisfx", cwd=repo)
    assert "60 of 60 clips in the feature cache; computing 0" in log
    with np.load(repo / "data/embeddings/esc50/aisfx.npz") as embedded:
        assert embedded["values"].shape == (60, 256 + 512)
    sh("git", "checkout", "--", "params.yaml", "dvc.lock", cwd=repo)
    sh("dvc", "checkout", "embeddings@esc50-aisfx", cwd=repo)
    before = {m: (repo / f"metrics/esc50/details/{m}.json").read_text() for m in MODELS}
    log = sh("dvc", "exp", "run", "-S", "nn.layers=[400,200]", cwd=repo)
    ran = ran_stages(log)
    assert ran == {name for dataset in ("esc50", "freesound") for name in (
        f"train-nn-2layer@{dataset}", f"ensemble-member@{dataset}-nn-2layer",
        f"train-ensemble@{dataset}", f"details@{dataset}")} | {"compare"}, log  # a member
    after = {m: (repo / f"metrics/esc50/details/{m}.json").read_text() for m in MODELS}
    assert after["nn-2layer"] != before["nn-2layer"]
    assert after["svc"] == before["svc"] and after["nn-5layer"] == before["nn-5layer"]
    assert "| ESC-50 | NN | [400, 200] |" in (repo / "metrics/compare.md").read_text()
    diff = sh("dvc", "metrics", "diff", "--md", "--targets",
              "metrics/esc50/details/nn-2layer.json", cwd=repo)  # beside the metrics, named
    assert "metrics/esc50/details/nn-2layer.json" in diff and "valid_loss" in diff

    # other members by params alone: the ensemble reruns on those already made
    log = sh("dvc", "exp", "run", "-S", "ensemble.members=[svc,pretrained-aisfx]", cwd=repo)
    ran = ran_stages(log)
    assert ran == {"train-ensemble@esc50", "train-ensemble@freesound", "details@esc50",
                   "details@freesound", "compare"}, log
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble["weights"]) == {"svc", "pretrained-aisfx"}
    # ... and a model that is no longer a member changes without rerunning it
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["nn_deep"]["layers"] = [16, 8]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("dvc", "repro", "-s", "train-nn-5layer@esc50", cwd=repo)
    changed = changed_stages(repo)
    assert "train-ensemble" not in changed and "train-nn-5layer" in changed, changed  # freesound's


def test_report_shows_the_change_against_the_base(project):
    repo, _ = project
    base = json.loads(sh("git", "show", "HEAD:metrics/esc50/details/nn-2layer.json", cwd=repo))
    now = json.loads((repo / "metrics/esc50/details/nn-2layer.json").read_text())
    sh(sys.executable, str(repo / "scripts/report"), "--base", "HEAD", "--out",
       "review/report.md", cwd=repo)
    text = (repo / "review/report.md").read_text()
    # the columns are padded to the longest param of the change (ensemble.members)
    assert re.search(r"\| params\.yaml +\| nn\.layers +\| \[200, 100\] +\| \[400, 200\]", text)
    row = next(line for line in text.splitlines()
               if "metrics/esc50/details/nn-2layer.json" in line and "valid_loss" in line)
    assert f"{base['valid_loss']:.4g}"[:5] in row and f"{now['valid_loss']:.4g}"[:5] in row
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert "report/plots_compare-HEAD.png" in images
    assert "report/plots_compare-workspace.png" in images
    assert any("per_class_esc50" in i for i in images) and any("training" in i for i in images)
    for image in images:
        assert (repo / "review" / image).read_bytes()[:4] == b"\x89PNG"


def test_exp_show_lists_experiments_with_their_metrics(project):
    repo, _ = project
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo))
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    layers = set()
    for exp in experiments:
        for run in exp["revs"]:
            data = run["data"]
            layers.add(str(data["params"]["params.yaml"]["data"]["nn"]["layers"]))
            metrics = data["metrics"]["metrics/esc50/nn-2layer.json"]["data"]
            assert 0 <= metrics["accuracy"] <= 1 and "n_train" not in metrics  # scores
    assert "[400, 200]" in layers


def test_sweep_queues_the_documented_grid(project):
    repo, _ = project
    listed = sh(sys.executable, "scripts/sweep.py", "--dry-run", cwd=repo)
    assert "108 experiment(s) listed" in listed
    assert "dvc exp run --queue -S nn.layers=[300,150,75] -S nn.training.lr=0.0005" in listed
    queued = sh(sys.executable, "scripts/sweep.py", "--axes", "lr", cwd=repo)
    assert "3 experiment(s) queued" in queued
    status = sh("dvc", "queue", "status", cwd=repo)
    assert status.count("Queued") == 3
    sh("dvc", "queue", "remove", "--queued", cwd=repo)


def test_every_declared_plot_exists_and_renders(project):
    repo, _ = project
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    datasets = ["esc50", "freesound"]
    paths = {next(iter(p)) if isinstance(p, dict) else p for p in pipeline["plots"]}
    lists = {"${datasets}": datasets, "${cnn.datasets}": params["cnn"]["datasets"],
             "${zeroshot.datasets}": params["zeroshot"]["datasets"],
             "${embeddings.encoders}": params["embeddings"]["encoders"],
             "${ensemble.members}": params["ensemble"]["members"]}
    for stage in pipeline["stages"].values():
        # a stage's plots for every item of its foreach or matrix (cnn.datasets and
        # zeroshot.datasets: none by default)
        if "foreach" in stage:
            items = [{"${item}": str(d)} for d in lists[stage["foreach"]]]
        elif "matrix" in stage:
            keys = list(stage["matrix"])
            items = [{f"${{item.{k}}}": v for k, v in zip(keys, values, strict=True)}
                     for values in itertools.product(*(lists[stage["matrix"][k]]
                                                       for k in keys))]
        else:
            items = [{}]
        for entry in stage.get("do", stage).get("plots", []):
            for item in items:
                path = next(iter(entry))
                for key, value in item.items():
                    path = path.replace(key, value)
                paths.add(path)
    for path in sorted(paths):
        assert (repo / path).exists(), path
    assert len(list((repo / "plots/confusion").rglob("*.png"))) == 2 * len(MODELS)
    assert {p.name for p in (repo / "plots/per_class").iterdir()} == {"esc50.png",
                                                                       "freesound.png"}
    shown = json.loads(sh("dvc", "plots", "show", "--json", cwd=repo))
    assert not shown.get("errors")
    assert len(shown["data"]) >= 8 + 8 + 16 + 1 + 8 + 2
