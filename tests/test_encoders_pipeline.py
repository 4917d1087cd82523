"""Several encoders at once through `dvc repro` and `dvc exp run`: each its weights, its
embeddings and its own model, the zero-shot model, and the ensemble of them.

CLAP and AST are the tiny random-weight repositories of tests/hub_models.py, given as
local copies (``weights.<encoder>.url``), aisfx the demo checkpoint, PANNs CNN14 the
seeded stand-in of scripts/make_panns_checkpoint.py; the synthetic ESC-50 of conftest.
The MLPs' stages are left out (they run in test_pipeline).
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from scripts.make_panns_checkpoint import make_checkpoint
from soundclf.data.archive import sha256sum
from tests.e2e import committed_project, esc50_alone, ran_stages, sh
from tests.hub_models import write_calibrated_clap, write_tiny_ast

pytestmark = pytest.mark.slow

MEMBERS = ["svc", "pretrained-aisfx", "pretrained-clap", "zeroshot-clap"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, esc50_zip, demo_weights):
    hub = tmp_path_factory.mktemp("hub")
    write_tiny_ast(hub / "ast")
    # a tiny CLAP whose zero-shot tells the classes apart, calibrated on training clips
    # (folds 1 to 4; fold 5 is scored), else the pipeline refuses it as collapsed
    clips = hub / "clips"
    with zipfile.ZipFile(esc50_zip) as zf:
        meta = pd.read_csv(zf.open("ESC-50-master/meta/esc50.csv"))
        zf.extractall(clips, [f"ESC-50-master/audio/{f}" for f in meta["filename"]])
    train = meta[meta["fold"] != 5]
    write_calibrated_clap(hub / "clap", {
        label: [clips / "ESC-50-master/audio" / f for f in group["filename"]]
        for label, group in train.groupby("category")})

    def edit(params: dict) -> None:
        esc50_alone(esc50_zip, demo_weights)(params)
        params["embeddings"]["encoders"] = ["aisfx", "clap"]
        for name in ("clap", "ast"):
            params["weights"][name]["url"] = str(hub / name)
        params["zeroshot"]["datasets"] = ["esc50"]
        params["ensemble"]["members"] = MEMBERS
        params["cnn"]["datasets"] = []

    def edit_pipeline(pipeline: dict) -> None:
        for stage in ("train-nn-2layer", "train-nn-5layer"):
            del pipeline["stages"][stage]

    repo = committed_project(tmp_path_factory.mktemp("encoders") / "project", edit,
                             edit_pipeline)
    log = sh("dvc", "repro", cwd=repo)
    return repo, log


def test_each_encoder_gets_its_weights_embeddings_and_model(project):
    repo, log = project
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert {"weights@aisfx", "weights@clap", "embeddings@esc50-aisfx", "embeddings@esc50-clap",
            "train-pretrained@esc50-aisfx", "train-pretrained@esc50-clap",
            "train-zeroshot-clap@esc50"} <= ran, ran
    assert sorted(p.name for p in (repo / "data/weights/clap").iterdir()) == [
        "config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
        "tokenizer_config.json"]
    for encoder, width in (("aisfx", 2 * 768), ("clap", 2 * 8)):
        with np.load(repo / f"data/embeddings/esc50/{encoder}.npz") as embedded:
            assert embedded["values"].shape == (60, width)
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert set(compare["esc50"]) == {*MEMBERS, "ensemble"}
    table = (repo / "metrics/compare.md").read_text()
    assert "| ESC-50 | Pretrained embeddings + LogReg | clap | 1 |" in table
    assert "| ESC-50 | Zero-shot CLAP | 'This is a sound of {}.' | 1 |" in table
    # its prompts in the order of its classes: the calibrated tiny CLAP scores fold 5 well
    zero = json.loads((repo / "metrics/esc50/zeroshot-clap.json").read_text())
    assert zero["accuracy"] >= 0.75, zero  # chance is 0.25
    # the zero-shot model trains on nothing: its out-of-fold probabilities are its own
    probs = pd.read_parquet(repo / "data/probabilities/esc50/zeroshot-clap.parquet")
    classes = probs.filter(like="p_")
    np.testing.assert_allclose(classes.sum(axis=1), 1.0, rtol=1e-6)
    assert set(probs["split"]) == {"train", "valid"}
    ensemble = json.loads((repo / "metrics/esc50/details/ensemble.json").read_text())
    assert set(ensemble["weights"]) == set(MEMBERS)
    assert (repo / "plots/confusion/esc50/zeroshot-clap.png").is_file()
    # predict with the trained models, from the audio alone
    clip = next((repo / "data/raw/esc50").rglob("5-*.wav"))
    for model in ("pretrained-clap", "zeroshot-clap", "ensemble"):
        shown = sh("python", "-m", "soundclf", "predict", "esc50", model, str(clip), cwd=repo)
        assert shown.startswith(f"{clip}: "), shown
    shown = sh("python", "-m", "soundclf", "predict", "esc50", "zeroshot-clap", str(clip),
               "--labels", "siren, dog bark", cwd=repo)
    assert "siren" in shown and "dog bark" in shown


def test_an_experiment_adds_an_encoder_without_retraining_the_others(project):
    repo, _ = project
    log = sh("dvc", "exp", "run", "-S", "embeddings.encoders=[aisfx,clap,ast]",
             "-S", f"ensemble.members=[{','.join([*MEMBERS, 'pretrained-ast'])}]", cwd=repo)
    ran = ran_stages(log)
    assert ran == {"weights@ast", "embeddings@esc50-ast", "train-pretrained@esc50-ast",
                   "ensemble-member@esc50-pretrained-ast", "train-ensemble@esc50",
                   "details@esc50", "compare"}, log
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert "pretrained-ast" in compare["esc50"]
    with np.load(repo / "data/embeddings/esc50/ast.npz") as embedded:
        assert embedded["values"].shape == (60, 2 * 16)


def test_cnn14_joins_from_a_local_checkpoint_of_the_published_layout(project, tmp_path):
    """PANNs CNN14 with the seeded stand-in of its published file (scripts/
    make_panns_checkpoint.py), given as a local path, its digest not pinned."""
    repo, _ = project
    checkpoint = make_checkpoint(tmp_path / "Cnn14_seeded.pth")
    members = [*MEMBERS, "pretrained-panns_cnn14"]
    log = sh("dvc", "exp", "run", "-S", "embeddings.encoders=[aisfx,clap,panns_cnn14]",
             "-S", f"weights.panns_cnn14.url={checkpoint}",
             "-S", f"ensemble.members=[{','.join(members)}]", cwd=repo)
    ran = ran_stages(log)
    assert {"weights@panns_cnn14", "embeddings@esc50-panns_cnn14",
            "train-pretrained@esc50-panns_cnn14", "train-ensemble@esc50"} <= ran, log
    assert not ran & {"embeddings@esc50-aisfx", "embeddings@esc50-clap"}, log
    digest = sha256sum(checkpoint)
    assert "'weights.panns_cnn14.sha256' is null" in log and f"sha256: {digest}" in log
    assert sha256sum(repo / "data/weights/panns_cnn14/checkpoint.pth") == digest
    with np.load(repo / "data/embeddings/esc50/panns_cnn14.npz") as embedded:
        values = embedded["values"]
    assert values.shape == (60, 2 * 2048) and np.isfinite(values).all()
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert "pretrained-panns_cnn14" in compare["esc50"]
    clip = next((repo / "data/raw/esc50").rglob("5-*.wav"))
    shown = sh("python", "-m", "soundclf", "predict", "esc50", "pretrained-panns_cnn14",
               str(clip), cwd=repo)
    assert f"\n{clip}: " in f"\n{shown}", shown
