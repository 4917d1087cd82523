"""params.yaml mistakes are rejected before any work, naming the key and what is allowed."""

import subprocess
import sys

import pytest
import yaml

from soundclf.data.datasets import ADAPTERS
from soundclf.params import DATASETS, ParamError, format_value, load_params, read_yaml, validate
from tests.conftest import REPO


@pytest.fixture
def params():
    return load_params(REPO / "params.yaml")


def test_shipped_params_are_valid_and_cover_every_adapter(params):
    assert set(DATASETS) == set(ADAPTERS)
    assert params["datasets"] == params["cnn"]["datasets"] == ["esc50", "freesound"]
    assert "cnn" in params["ensemble"]["members"]


@pytest.mark.parametrize("key, value, message", [
    ("normalize.scaler", "zscore",
     "'normalize.scaler' must be one of none, standard, minmax, robust; got 'zscore'"),
    ("nn.layers", [], "'nn.layers' must be a non-empty list of positive integers"),
    ("nn.layers", [200, 0], "'nn.layers' must be a non-empty list of positive integers"),
    ("nn_deep.layers", "400,300", "'nn_deep.layers' must be a non-empty list"),
    ("nn.training.lr", -0.001, "'nn.training.lr' must be a positive number; got -0.001"),
    ("nn.training.epochs", 2.5, "'nn.training.epochs' must be an integer >= 1; got 2.5"),
    ("nn.training.ps", 1.5, "'nn.training.ps' must be a probability in [0, 1)"),
    ("nn.training.class_weights", "inverse",
     "'nn.training.class_weights' must be one of none, balanced"),
    ("svc.dual", "yes", "'svc.dual' must be one of true, false, auto; got 'yes'"),
    ("svc.C", 0, "'svc.C' must be a positive number; got 0"),
    ("features.n_jobs", 0, "'features.n_jobs' must be a non-zero integer"),
    ("features.on_error", "ignore", "'features.on_error' must be one of fail, skip"),
    ("data.esc50.sha256", "abc", "'data.esc50.sha256' must be null or a 64-character hex"),
    ("data.freesound.valid_size", 20, "'data.freesound.valid_size' must be a fraction"),
    ("datasets", ["esc50", "fsd50k"], "'datasets' must be a non-empty list of distinct names "
                                      "from esc50, esc10, freesound; got ['esc50', 'fsd50k']"),
    ("datasets", [], "'datasets' must be a non-empty list"),
    ("data.esc50.cv", "yes", "'data.esc50.cv' must be one of true, false; got 'yes'"),
    ("data.freesound.repeats", 0, "'data.freesound.repeats' must be an integer >= 1"),
    ("ensemble.members", ["svc"], "'ensemble.members' must be a list of two or more distinct "
                                  "model names, e.g. [svc, nn-2layer]; got ['svc']"),
    ("ensemble.members", ["svc", "svc"], "'ensemble.members' must be a list of two or more"),
    ("cnn.datasets", ["esc10"], "'cnn.datasets' must be a list of distinct names from "
                                "datasets (esc50, freesound), [] for none; got ['esc10']"),
    ("datasets", ["esc50"], "got ['esc50', 'freesound'] (with -S 'datasets=[...]', set -S "
                            "'cnn.datasets=[...]' too, e.g. -S 'cnn.datasets=[esc50]')"),
    ("cnn.datasets", ["esc50"], "'ensemble.members' has cnn, which runs only for the datasets "
                                "of 'cnn.datasets': add freesound to it"),
    ("cnn.training.device", "gpu", "'cnn.training.device' must be one of auto, cpu, cuda"),
    ("cnn.training.mixup", -1, "'cnn.training.mixup' must be a non-negative number"),
    ("ensemble.combine", "stack", "'ensemble.combine' must be one of weighted, vote"),
    ("oof.folds", -1, "'oof.folds' must be an integer >= 0"),
    ("oof.epochs", 0, "'oof.epochs' must be a fraction in (0, 1]; got 0"),
    ("oof.epochs", 40, "'oof.epochs' must be a fraction in (0, 1]; got 40"),
])
def test_bad_value_names_key_and_allowed_values(params, key, value, message):
    section, _, leaf = key.rpartition(".")
    node = params
    for part in filter(None, section.split(".")):
        node = node[part]
    node[leaf or key] = value
    with pytest.raises(ParamError) as err:
        validate(params)
    assert message in str(err.value)


def test_floats_as_dvc_writes_them_are_numbers(tmp_path):
    """`dvc exp run -S svc.C=0.000001` writes `C: 1e-06`, a string to YAML 1.1."""
    text = (REPO / "params.yaml").read_text()
    assert "  C: 1.0\n" in text and "  lr: 0.001 " in text
    (tmp_path / "params.yaml").write_text(
        text.replace("  C: 1.0\n", "  C: 1e-06\n").replace("  lr: 0.001 ", "  lr: 5E+2 "))
    params = load_params(tmp_path / "params.yaml")
    assert params["svc"]["C"] == 1e-06 and params["nn"]["training"]["lr"] == 500.0
    assert params["seed"] == 42  # integers stay integers
    assert params["nn"]["training"]["epochs"] == 30


@pytest.mark.parametrize("value, text", [
    (1e-06, "0.000001"), (0.0005, "0.0005"), (1.0, "1.0"), (42, "42"), (None, "null"),
    (True, "true"), ("standard", "standard"), ([400, 200], "[400,200]"),
    (["svc", "nn-2layer"], '["svc","nn-2layer"]'),
])
def test_values_written_for_dvc_exp_run_read_back_the_same(value, text):
    assert format_value(value) == text
    assert read_yaml(text) == value and type(read_yaml(text)) is type(value)


def test_typo_and_missing_key_are_named_with_a_suggestion(params):
    params["nn"]["layer"] = params["nn"].pop("layers")
    with pytest.raises(ParamError) as err:
        validate(params)
    assert "'nn.layer' is not a known key (did you mean 'nn.layers'?)" in str(err.value)
    assert "'nn.layers' is missing" in str(err.value)


def test_every_problem_is_listed_at_once(params):
    params["nn"]["training"]["lr"] = -1
    params["normalize"]["scaler"] = "zscore"
    with pytest.raises(ParamError) as err:
        validate(params)
    assert "'nn.training.lr'" in str(err.value) and "'normalize.scaler'" in str(err.value)


def test_a_stage_rejects_bad_params_before_any_work(tmp_path, params):
    """train-svc with a bad param exits at once, naming it, and writes nothing."""
    params["svc"]["class_weight"] = "auto"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "stages.train", "svc", "missing.parquet", "m.joblib", "m.json",
         "p.csv"], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert result.returncode != 0
    assert "'svc.class_weight' must be one of none, balanced; got 'auto'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
