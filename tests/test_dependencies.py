"""dvc.yaml declares every `stages/` module each stage runs, and every param its models read.

A stage's code dependencies are the import closure of the module its ``cmd`` runs
(``python -m stages.X``), found by reading every ``import`` statement, including those
inside functions, and the package ``__init__`` files on the way. The model registry
imports model modules by name (soundclf.models.get / every): a ``stages.train MODEL`` stage
reaches MODEL's module, any other stage that imports the registry may reach every model,
so it must declare ``soundclf/models`` whole. An edit to any module a stage runs must rerun
it, or `dvc repro` would keep results the code no longer gives.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

from soundclf import models, trained
from soundclf.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "soundclf")  # the stage modules and the library they call
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = read_yaml((ROOT / "params.yaml").read_text())


def module_file(module: str) -> Path | None:
    """The file of a project module or package, relative to the root; None if none."""
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT)
    return None


def has_code(path: Path) -> bool:
    """Anything but a docstring (an empty package ``__init__`` runs nothing worth declaring)."""
    body = ast.parse((ROOT / path).read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in body)


def imported_modules(path: Path) -> set[str]:
    """Every module of the project (``stages``, ``soundclf``) a file imports, anywhere in
    it, with its parent packages."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from stages import models`: the name may be a module of the package
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in PACKAGES:
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in found if module_file(m)}


def closure(module: str) -> set[str]:
    """The modules ``module`` runs: itself, its imports, theirs... (with their packages)."""
    parts = module.split(".")
    todo = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen or module_file(current) is None:
            continue
        seen.add(current)
        todo += imported_modules(module_file(current))
    return seen


def stage_commands() -> dict[str, list[str]]:
    return {name: shlex.split(stage.get("do", stage)["cmd"])
            for name, stage in DVC_YAML["stages"].items()}


def required_code(argv: list[str]) -> set[str]:
    """The files a stage's command runs, as dvc.yaml should list them."""
    assert argv[:2] == ["python", "-m"], argv
    modules = closure(argv[2])
    if "soundclf.models" in modules:
        if argv[2] == "stages.train":
            modules |= closure(models.module_of(argv[3]))
        else:
            modules |= {f"soundclf.models.{p.stem}"
                        for p in (ROOT / "soundclf/models").glob("*.py")}
    files = {module_file(m) for m in modules}
    return {str(f) for f in files if f.name != "__init__.py" or has_code(f)}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", list(DVC_YAML["stages"]))
def test_stage_declares_every_module_it_runs(stage):
    block = DVC_YAML["stages"][stage].get("do", DVC_YAML["stages"][stage])
    missing = sorted(f for f in required_code(stage_commands()[stage])
                     if not covered(f, block["deps"]))
    assert not missing, f"dvc.yaml stage {stage} does not declare {missing}"


@pytest.mark.parametrize("stage", list(DVC_YAML["stages"]))
def test_stage_declares_no_module_it_does_not_run(stage):
    block = DVC_YAML["stages"][stage].get("do", DVC_YAML["stages"][stage])
    needed = required_code(stage_commands()[stage])
    extra = sorted(d for d in block["deps"] if d.startswith(("stages/", "soundclf/"))
                   and d.endswith(".py") and d not in needed)
    assert not extra, f"dvc.yaml stage {stage} declares {extra}, which it never imports"


def test_the_closure_sees_imports_inside_functions_and_packages(tmp_path, monkeypatch):
    # the closure the tests above rely on: a real stage's known chain
    train = closure("stages.train")
    assert {"stages.train", "soundclf.evaluation.tune", "soundclf.evaluation.fit",
            "soundclf.table", "soundclf.params", "soundclf.io", "soundclf.models",
            "soundclf.evaluation.folds"} <= train
    assert "soundclf.data.audio" not in train  # model stages do not load librosa
    assert "soundclf.models.nn" in closure("soundclf.models.nn")
    assert required_code(["python", "-m", "stages.train", "svc"]) >= {
        "soundclf/models/svc.py", "soundclf/models/__init__.py"}
    assert "soundclf/models/nn.py" not in required_code(["python", "-m", "stages.train", "svc"])


def test_model_stages_do_not_import_librosa():
    for module in closure("stages.train") | closure("stages.train_ensemble") | {
            f"soundclf.models.{p.stem}" for p in (ROOT / "soundclf/models").glob("*.py")}:
        source = (ROOT / module_file(module)).read_text()
        assert "librosa" not in {n.split(".")[0] for node in ast.walk(ast.parse(source))
                                 if isinstance(node, (ast.Import, ast.ImportFrom))
                                 for n in ([a.name for a in node.names]
                                           if isinstance(node, ast.Import)
                                           else [node.module or ""])}, module


def test_no_stage_script_imports_another():
    scripts = {argv[2] for argv in stage_commands().values()}
    for script in scripts:
        others = imported_modules(module_file(script)) & (scripts - {script})
        assert not others, f"{script} imports the stage script(s) {sorted(others)}"


def declared_params(stage: str) -> list[str]:
    block = DVC_YAML["stages"][stage].get("do", DVC_YAML["stages"][stage])
    return [p for p in block.get("params", []) if isinstance(p, str)]


def declares(declared: list[str], key: str) -> bool:
    """A param key is declared by itself or by a section above it."""
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.parametrize("name", ["svc", "nn-2layer", "nn-5layer", "cnn", "pretrained-aisfx",
                                  "pretrained-clap", "pretrained-ast", "zeroshot-clap"])
def test_model_stages_declare_the_params_their_model_reads(name):
    """... and those its inputs were computed with, which its model file records
    (soundclf.trained), so that a change of them reruns it. pretrained-<encoder>: the
    matrix stage train-pretrained, its item the encoder."""
    model = models.get(name)
    stage = f"train-{name}" if f"train-{name}" in DVC_YAML["stages"] \
        else f"train-{name.split('-')[0]}"
    declared = [d.replace("${item.encoder}", model.encoder or "")
                for d in declared_params(stage)]
    needed = [*model.params, *([f"tune.{model.tune}", "tune.folds", "tune.max_folds",
                                "tune.metric"] if model.tune else []),
              *trained.input_keys(model.inputs, model.encoder)]
    assert [k for k in needed if not declares(declared, k)] == []


def test_the_ensemble_depends_on_its_members_probabilities_alone():
    """Its members reach it through their probabilities, one ensemble-member stage each (a
    matrix over ensemble.members): no member's section, no other model's output."""
    assert declared_params("train-ensemble") == ["ensemble"]
    member = DVC_YAML["stages"]["ensemble-member"]
    assert member["matrix"] == {"dataset": "${datasets}", "model": "${ensemble.members}"}
    assert "data/probabilities/${item.dataset}/${item.model}.parquet" in member["deps"]
    ensemble = DVC_YAML["stages"]["train-ensemble"]["do"]
    assert [d for d in ensemble["deps"] if d.startswith("data/")] == ["data/ensemble/${item}"]
    for name, stage in DVC_YAML["stages"].items():  # every model stage writes them
        if name.startswith("train-") and name != "train-ensemble":
            model = shlex.split(stage.get("do", stage)["cmd"])[3]
            dataset = "${item}" if "do" in stage else "${item.dataset}"
            block = stage.get("do", stage)
            assert f"data/probabilities/{dataset}/{model}.parquet" in block["outs"]
            assert "oof" in block["params"]


@pytest.mark.parametrize("name", list(models.every()))
def test_a_model_builds_from_the_params_it_declares_alone(name):
    model = models.get(name)
    keys = list(model.params)
    only = {}
    for key in keys:  # a copy of params.yaml holding only those keys
        *sections, last = key.split(".")
        node, source = only, PARAMS
        for part in sections:
            node, source = node.setdefault(part, {}), source[part]
        node[last] = source[last]
    estimator = model.build(only, ["stft_mean_0", "mel_mean_0", "cqt_mean_0"])
    assert hasattr(estimator, "fit") and hasattr(estimator, "predict")


def test_a_new_nn_training_setting_reruns_both_nn_stages_but_layers_only_its_own():
    two, five = declared_params("train-nn-2layer"), declared_params("train-nn-5layer")
    new_setting = "nn.training.label_smoothing"  # not in params.yaml: any future key
    assert declares(two, new_setting) and declares(five, new_setting)
    assert declares(two, "nn.layers") and not declares(five, "nn.layers")
    assert declares(five, "nn_deep.layers") and not declares(two, "nn_deep.layers")


# the stages that write git-tracked files (plain outputs with cache: false): cheap copies
# and tables, which rerun in every queued experiment
GIT_WRITERS = {"details", "compare"}


def test_every_other_stage_is_restorable_from_the_run_cache():
    """DVC saves a stage's runs only if no output is persistent and none is `cache: false`
    but metrics and plots; a queued experiment skips a stage only by restoring it."""
    for name, stage in DVC_YAML["stages"].items():
        outs = [entry for entry in stage.get("do", stage).get("outs", [])
                if isinstance(entry, dict)]
        options = {path: opts or {} for entry in outs for path, opts in entry.items()}
        assert not [p for p, o in options.items() if o.get("persist")], name
        uncached = [p for p, o in options.items() if o.get("cache") is False]
        assert not uncached or name in GIT_WRITERS, (name, uncached)
