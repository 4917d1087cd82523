"""End to end: queued experiments rerun only what they change, the rest from the run-cache.

A queued experiment (`dvc exp run --queue`, then `dvc queue start`) runs in a temporary
copy of the repository made from git, without the workspace's outputs and, when the last
`dvc repro` was not committed, without its dvc.lock: a stage is skipped there only by
restoring it from DVC's run-cache. So every expensive stage must be restorable (no
persistent output, no `cache: false` output but metrics and plots). Here `dvc repro` runs
on the synthetic ESC-50 and is not committed; two experiments are queued and run side by
side.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import ALWAYS_RUN, committed_project, esc50_alone, ran_stages, sh

pytestmark = pytest.mark.slow

EXPERIMENTS = {"svc.C=0.5": "svc", "nn.layers=[64,32]": "nn-2layer"}
# the stages that may run for an experiment that changes one model: its own, the member
# stage that hands its probabilities to the ensemble, and what reads theirs; details and
# compare write git-tracked outputs (cache: false), so they run in every experiment
READERS = {"train-ensemble@esc50", "details@esc50", "compare"}


@pytest.fixture(scope="module")
def queue(tmp_path_factory, esc50_zip, demo_weights) -> tuple[Path, dict[str, str]]:
    repo = committed_project(tmp_path_factory.mktemp("queue"),
                             esc50_alone(esc50_zip, demo_weights))
    sh("dvc", "repro", cwd=repo)  # not committed: the queue has the run-cache alone
    names = {}
    for setting in EXPERIMENTS:
        out = sh("dvc", "exp", "run", "--queue", "-S", setting, cwd=repo)
        names[setting] = re.search(r"Queued experiment '([^']+)'", out)[1]
    sh("dvc", "queue", "start", "-j", "2", cwd=repo)
    deadline = time.monotonic() + 900
    try:
        while re.search(r"\b(Queued|Running)\b", status := sh("dvc", "queue", "status",
                                                                cwd=repo)):
            assert time.monotonic() < deadline, status
            time.sleep(3)
        assert status.count("Success") == len(EXPERIMENTS), status
        yield repo, {setting: sh("dvc", "queue", "logs", name, cwd=repo)
                     for setting, name in names.items()}
    finally:  # the queue's workers stop when idle; this stops them after a failure too
        subprocess.run([sys.executable, "-m", "dvc", "queue", "stop"], cwd=repo,
                       capture_output=True, timeout=60)


def stages_of(repo: Path) -> set[str]:
    """Every stage of the pipeline, as DVC names them (download@esc50...)."""
    return set(sh("dvc", "stage", "list", "--name-only", cwd=repo).split())


@pytest.mark.parametrize("setting", list(EXPERIMENTS))
def test_a_queued_experiment_runs_only_the_model_it_changes(queue, setting):
    repo, logs = queue
    log, model = logs[setting], EXPERIMENTS[setting]
    ran = ran_stages(log)
    restored = set(re.findall(r"Stage '([^']+)' is cached - skipping run", log))
    assert f"train-{model}@esc50" in ran, log
    assert ran <= {f"train-{model}@esc50", f"ensemble-member@esc50-{model}"} | READERS, log
    # everything else came back from the run-cache: the download, the features, the
    # embeddings, the spectrograms and every other model, the CNN included (but the index,
    # which runs on every repro, cheaply)
    assert f"Running stage '{ALWAYS_RUN}@esc50'" in log
    assert stages_of(repo) - ran - {f"{ALWAYS_RUN}@esc50"} == restored, log
    assert {"download@esc50", "feature-extraction@esc50", "normalize@esc50", "weights@aisfx",
            "embeddings@esc50-aisfx", "train-pretrained@esc50-aisfx",
            "train-nn-5layer@esc50", "spectrograms@esc50", "train-cnn@esc50"} <= restored


def test_exp_show_lists_both_with_their_metrics(queue):
    repo, _ = queue
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo))
    experiments = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0]["data"]
            experiments[exp["name"]] = (data["params"]["params.yaml"]["data"],
                                        data["metrics"])
    found = {(str(p["svc"]["C"]), str(p["nn"]["layers"])) for p, _ in experiments.values()}
    assert {("0.5", "[200, 100]"), ("1.0", "[64, 32]")} <= found, experiments
    for _, metrics in experiments.values():
        for model in ("svc", "nn-2layer", "ensemble"):
            assert 0 <= metrics[f"metrics/esc50/{model}.json"]["data"]["accuracy"] <= 1
