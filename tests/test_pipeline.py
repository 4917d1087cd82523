"""End to end: the real dvc.yaml, `dvc repro` and `dvc exp run` on synthetic archives.

The project is copied into a temporary git repository, params.yaml is pointed at a
synthetic ESC-50-master.zip and synthetic FSDKaggle2019 zips, and DVC runs every stage of
both datasets for real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scripts.bench_pipeline import copy_project
from tests.conftest import REPO

pytestmark = pytest.mark.slow

MODELS = ("svc", "nn-2layer", "nn-5layer", "pretrained", "ensemble")


def sh(*cmd: str, cwd: Path, ok: bool = True) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, f"{' '.join(cmd)} exited {result.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def project(tmp_path_factory, esc50_zip, freesound_zips, demo_weights) -> tuple[Path, str]:
    repo = tmp_path_factory.mktemp("project")
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["datasets"] == ["esc50", "freesound"]
    params["data"]["esc50"]["url"] = str(esc50_zip)
    params["data"]["freesound"]["audio_url"] = freesound_zips[0].as_uri()
    params["data"]["freesound"]["meta_url"] = str(freesound_zips[1])
    params["weights"]["aisfx"] = demo_weights
    params["features"]["n_jobs"] = 2
    # 36-48 training clips: small batches (fastai drops the incomplete one) and more steps
    params["nn"]["training"].update(epochs=15, lr=0.01, batch_size=8)
    # the ensemble learns from one inner fold's out-of-fold probabilities (default 2):
    # the same code, a third fewer fits in every model stage
    params["oof"]["folds"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "project", cwd=repo)
    log = sh("dvc", "repro", cwd=repo)
    return repo, log


def test_repro_produces_metrics_predictions_and_plots(project):
    repo, log = project
    for model in MODELS:
        assert f"Running stage 'train-{model}@esc50'" in log
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
    assert "Running stage 'weights'" in log and "weights aisfx: verified" in log
    for dataset, clips in (("esc50", 60), ("freesound", 46)):  # FreeSound: 0.3 to 30 s
        with np.load(repo / f"data/embeddings/{dataset}.npz") as embedded:
            assert embedded["values"].shape == (clips, 2 * (256 + 512))
            assert np.isfinite(embedded["values"]).all()
            assert set(embedded["filename"]) == set(pd.read_parquet(
                repo / f"data/features/{dataset}.parquet")["filename"])

    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert set(compare["esc50"]) == set(MODELS)
    table = (repo / "metrics/compare.md").read_text()
    assert "| ESC-50 | NN | [200, 100] | 1 |" in table and "52.75%" in table
    assert "| ESC-50 | Ensemble | svc + nn-2layer + nn-5layer + pretrained | 1 |" in table
    assert "| ESC-50 | Pretrained embeddings + LogReg | aisfx [3, 4] | 1 |" in table
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    members = ("svc", "nn-2layer", "nn-5layer", "pretrained")
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

    assert "up to date" in sh("dvc", "status", cwd=repo)
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
    for model in rerun:
        sh("dvc", "repro", "-f", "-s", f"train-{model}@esc50", cwd=repo)
    assert {path: (repo / path).read_bytes() for path in outputs} == before


def test_failed_download_keeps_the_previous_dataset(project):
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
    assert sorted((p.relative_to(raw), p.stat().st_size) for p in raw.rglob("*")) == before
    assert "up to date" in sh("dvc", "status", cwd=repo)


def test_freesound_runs_in_the_same_repro(project):
    repo, log = project
    counts = json.loads((repo / "metrics/freesound/dataset.json").read_text())
    assert counts == {"clips_listed": 49, "clips_used": 46, "clips_excluded": 3, "classes": 5}
    for model in MODELS:
        assert f"Running stage 'train-{model}@freesound'" in log
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
    changed = {name.split("@")[0] for name in json.loads(sh("dvc", "status", "--json",
                                                            cwd=repo))}
    sh("git", "checkout", "--", "params.yaml", cwd=repo)
    assert changed == {"train-nn-2layer", "train-nn-5layer"}, changed
    # the pooling of the embeddings: their stage only, and its cache computes nothing
    params = yaml.safe_load(text)
    params["embeddings"]["pooling"] = ["mean"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = {name.split("@")[0] for name in json.loads(sh("dvc", "status", "--json",
                                                            cwd=repo))}
    # the embeddings, and the model whose file records how they are computed
    assert changed == {"embeddings", "train-pretrained"}, changed
    log = sh("dvc", "repro", "embeddings@esc50", cwd=repo)
    assert "60 of 60 clips in the feature cache; computing 0" in log
    with np.load(repo / "data/embeddings/esc50.npz") as embedded:
        assert embedded["values"].shape == (60, 256 + 512)
    sh("git", "checkout", "--", "params.yaml", "dvc.lock", cwd=repo)
    sh("dvc", "checkout", "embeddings@esc50", cwd=repo)
    before = {m: (repo / f"metrics/esc50/details/{m}.json").read_text() for m in MODELS}
    log = sh("dvc", "exp", "run", "-S", "nn.layers=[400,200]", cwd=repo)
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {name for dataset in ("esc50", "freesound") for name in (
        f"train-nn-2layer@{dataset}", f"ensemble-member@{dataset}-nn-2layer",
        f"train-ensemble@{dataset}")} | {"compare"}, log  # a member
    after = {m: (repo / f"metrics/esc50/details/{m}.json").read_text() for m in MODELS}
    assert after["nn-2layer"] != before["nn-2layer"]
    assert after["svc"] == before["svc"] and after["nn-5layer"] == before["nn-5layer"]
    assert "| ESC-50 | NN | [400, 200] |" in (repo / "metrics/compare.md").read_text()
    diff = sh("dvc", "metrics", "diff", "--md", "--targets",
              "metrics/esc50/details/nn-2layer.json", cwd=repo)  # beside the metrics, named
    assert "metrics/esc50/details/nn-2layer.json" in diff and "valid_loss" in diff

    # other members by params alone: the ensemble reruns on those already made
    log = sh("dvc", "exp", "run", "-S", "ensemble.members=[svc,pretrained]", cwd=repo)
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {"train-ensemble@esc50", "train-ensemble@freesound", "compare"}, log
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble["weights"]) == {"svc", "pretrained"}
    # ... and a model that is no longer a member changes without rerunning it
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["nn_deep"]["layers"] = [16, 8]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("dvc", "repro", "-s", "train-nn-5layer@esc50", cwd=repo)
    changed = {name.split("@")[0] for name in json.loads(sh("dvc", "status", "--json",
                                                            cwd=repo))}
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
    for stage in pipeline["stages"].values():
        # a stage's plots for every item of its foreach (cnn.datasets: none by default)
        items = {"${datasets}": datasets, "${cnn.datasets}": params["cnn"]["datasets"]}[
            stage["foreach"]] if "foreach" in stage else [None]
        for entry in stage.get("do", stage).get("plots", []):
            paths |= {next(iter(entry)).replace("${item}", str(d)) for d in items}
    for path in sorted(paths):
        assert (repo / path).exists(), path
    assert len(list((repo / "plots/confusion").rglob("*.png"))) == 2 * len(MODELS)
    assert {p.name for p in (repo / "plots/per_class").iterdir()} == {"esc50.png",
                                                                       "freesound.png"}
    shown = json.loads(sh("dvc", "plots", "show", "--json", cwd=repo))
    assert not shown.get("errors")
    assert len(shown["data"]) >= 8 + 8 + 16 + 1 + 8 + 2


def test_exp_run_cross_validation_on_one_dataset(project):
    repo, _ = project
    # early stopping too: its carved set, like the inner folds, keeps the recording
    # that gives clips to two classes (in folds 2 and 3, as in the official file) together
    log = sh("dvc", "exp", "run", "-S", "datasets=[esc50]", "-S", "data.esc50.cv=true",
             "-S", "nn.training.early_stopping=5", cwd=repo)
    assert "@freesound" not in log
    assert log.count("1 recording(s) give clips to different classes in different folds") == 1
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert set(compare) == {"esc50"}
    normalized = pd.read_parquet(repo / "data/normalized/esc50.parquet",
                                 columns=["round", "split", "filename", "src_file", "label"])
    assert list(normalized["round"].unique()) == ["fold5", "fold1", "fold2", "fold3", "fold4"]
    for name, part in normalized.groupby("round"):
        valid = part[part["split"] == "valid"]
        assert valid["filename"].str.startswith(f"{name[-1]}-").all() and len(valid) == 12
        def recordings(rows):  # what must stay together: a recording's clips of one class
            return set(zip(rows["src_file"], rows["label"], strict=True))
        assert not recordings(valid) & recordings(part[part["split"] == "train"])
    for model in MODELS:
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
    repo, _ = project
    sh("git", "checkout", "--", "params.yaml", cwd=repo)  # as committed: one round each
    command = readme_command("Hyperparameter search")
    assert command.startswith("dvc exp run -n search ")
    log = sh("bash", "-c", f"{command} -S 'datasets=[esc50]'", cwd=repo)
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


def test_exp_run_adds_the_cnn_for_a_dataset(project):
    """cnn.datasets (empty by default) adds the spectrograms and train-cnn stages of a
    dataset; the CNN's metrics, curves and confusion plot join the others in compare, and
    ensemble.members takes it into the ensemble."""
    repo, _ = project
    sh("git", "checkout", "--", "params.yaml", cwd=repo)
    log = sh("dvc", "exp", "run", "-S", "datasets=[esc50]", "-S", "cnn.datasets=[esc50]",
             "-S", "cnn.training.epochs=15", "-S", "cnn.training.channels=[8,16,32]",
             "-S", "ensemble.members=[cnn,pretrained]", cwd=repo)
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert {"spectrograms@esc50", "train-cnn@esc50", "ensemble-member@esc50-cnn",
            "train-ensemble@esc50", "compare"} <= ran, log
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble["weights"]) == {"cnn", "pretrained"}  # a member by params alone
    assert ensemble["accuracy"] >= 0.5 and ensemble["n_train"] == 12
    with np.load(repo / "data/spectrograms/esc50.npz") as data:
        assert data["values"].shape == (60, 64, 216) and data["values"].dtype == np.float16
    metrics = json.loads((repo / "metrics/esc50/details/cnn.json").read_text())
    assert metrics["n_valid"] == 12 and metrics["accuracy"] >= 0.5  # chance is 0.25
    assert (repo / "plots/training/esc50/cnn/eval/loss.tsv").is_file()
    assert "| ESC-50 | CNN | [8, 16, 32] | 1 |" in (repo / "metrics/compare.md").read_text()
    assert (repo / "plots/confusion/esc50/cnn.png").is_file()


def test_predict_classifies_recordings_as_each_model_stage_did(project):
    """stages.predict on the validation clips' audio gives the labels each model's stage
    gave them: a feature model, an NN, the pretrained model, the CNN and the ensemble of
    the two (the experiment above), with the settings recorded in their files; params.yaml,
    edited meanwhile, plays no part."""
    repo, _ = project
    params = (repo / "params.yaml").read_text()
    edited = yaml.safe_load(params)
    edited["features"]["n_mels"] = 64
    edited["spectrograms"]["n_mels"] = 32
    edited["embeddings"]["pooling"] = ["std"]
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    audio = repo / "data/raw/esc50/ESC-50-master/audio"
    try:
        for model in ("svc", "nn-2layer", "pretrained", "cnn", "ensemble"):
            stage = pd.read_csv(repo / f"plots/predictions/esc50/{model}.csv")
            out = repo / f"predicted/{model}.csv"
            sh(sys.executable, "-m", "stages.predict", "esc50", model,
               *[str(audio / f) for f in stage["filename"]], "--csv", str(out), cwd=repo)
            assert list(pd.read_csv(out)["predicted"]) == list(stage["predicted"]), model
        shown = sh(sys.executable, "-m", "stages.predict", "esc50", "ensemble",
                   str(audio / stage["filename"][0]), "--top", "2", cwd=repo)
        assert re.search(rf"^{re.escape(str(audio / stage['filename'][0]))}: \w+ [01]\.\d{{3}}, "
                         r"\w+ [01]\.\d{3}$", shown, re.M), shown
    finally:
        (repo / "params.yaml").write_text(params)
