"""What the end-to-end tests share: running commands as a user would, and a copy of the
project pointed at synthetic archives, committed to a git repository of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from scripts.bench_pipeline import copy_project

MODELS = ("svc", "nn-2layer", "nn-5layer", "pretrained-aisfx", "cnn", "ensemble")
# the stage that runs on every repro (always_changed), so that DVC notices a change to a
# local folder it reads in place (docs/folders.md); it reruns nothing else unless a source
# changed
ALWAYS_RUN = "index"


def train_stage(model: str, dataset: str) -> str:
    """The stage that trains ``model`` on ``dataset``: ``train-svc@esc50``; a pretrained
    model's, of the matrix over datasets and encoders, ``train-pretrained@esc50-aisfx``."""
    if model.startswith("pretrained-"):
        return f"train-pretrained@{dataset}-{model.removeprefix('pretrained-')}"
    return f"train-{model}@{dataset}"


def sh(*cmd: str, cwd: Path, ok: bool = True) -> str:
    """Run ``cmd`` in ``cwd`` with this venv first on PATH; its output, asserting that it
    succeeded (``ok``) or failed."""
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


def committed_project(repo: Path, edit: Callable[[dict], None],
                      edit_pipeline: Callable[[dict], None] | None = None) -> Path:
    """The project copied into ``repo`` as a fresh clone has it, params.yaml (and
    dvc.yaml) changed by ``edit`` (``edit_pipeline``), committed."""
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if edit_pipeline is not None:
        pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
        edit_pipeline(pipeline)
        (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "project", cwd=repo)
    return repo


def small_training(params: dict) -> None:
    """Settings for the 4-class synthetic ESC-50 (36-48 training clips) and FreeSound (27):
    two feature workers, small NN and CNN batches (fastai drops the incomplete one) for
    more steps, and a CNN of three small blocks trained for 10 epochs: the same code,
    seconds a fit. (In batches of 32, one step an epoch, the CNN predicted one class.)"""
    params["features"]["n_jobs"] = 2
    params["nn"]["training"].update(epochs=15, lr=0.01, batch_size=8)
    params["cnn"]["training"].update(epochs=10, channels=[8, 16, 32], batch_size=8)


def esc50_alone(esc50_zip: Path, weights: dict[str, str]) -> Callable[[dict], None]:
    """The params edit of a project on the synthetic ESC-50 alone, with the demo
    checkpoint and :func:`small_training`."""
    def edit(params: dict) -> None:
        params["datasets"] = params["cnn"]["datasets"] = ["esc50"]
        params["data"]["esc50"]["url"] = str(esc50_zip)
        params["weights"]["aisfx"] = weights
        small_training(params)

    return edit


def ran_stages(log: str) -> set[str]:
    """The stages a repro's ``log`` ran, but :data:`ALWAYS_RUN`'s."""
    return {name for name in re.findall(r"Running stage '([^']+)'", log)
            if name.split("@")[0] != ALWAYS_RUN}


def changed_stages(repo: Path) -> set[str]:
    """The stages (``train-svc``, without ``@<dataset>``) ``dvc status`` says would run,
    but :data:`ALWAYS_RUN`, which is "always changed"."""
    status = json.loads(sh("dvc", "status", "--json", cwd=repo))
    return {name.split("@")[0] for name, why in status.items()
            if not (name.split("@")[0] == ALWAYS_RUN and why == ["always changed"])}


def up_to_date(repo: Path) -> bool:
    """Nothing to run but :data:`ALWAYS_RUN`."""
    return changed_stages(repo) == set()
