"""The README's and the docs' commands stay valid: a doc cannot drift from the code.

Every line of every ```bash block of README.md and docs/*.md is read as the shell would
split it. The params it sets with ``-S`` (``dvc exp run``, scripts/bench_pipeline.py) must
make a valid params.yaml (known keys, valid values: soundclf.params' own check), the scripts
and modules it runs must exist and know its ``--options``, and the files it names for
``dvc metrics`` must be ones dvc.yaml writes.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from soundclf.__main__ import COMMANDS
from soundclf.params import FOLDER_DEFAULTS, problems, read_yaml
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PARAMS = read_yaml((REPO / "params.yaml").read_text())
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
OTHER_MODULES = {"venv", "pytest", "pip"}  # not the project's


def commands(path: Path) -> list[list[str]]:
    """Each command of the file's bash blocks, as words (``&&``, ``;``, ``|`` split it)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", ";", "|", "||"):
                    if command:
                        found.append(command)
                    command = []
                else:
                    command.append(word)
    return found


def every_command() -> list[tuple[str, list[str]]]:
    return [(f"{path.relative_to(REPO)}: {' '.join(c)}", c) for path in DOCS
            for c in commands(path)]


def alternatives(text: str) -> list[str]:
    """A sweep's values (``-S 'svc.C=0.1,0.3'`` queues an experiment for each: DVC's Hydra
    syntax), or the one value; a comma inside brackets is a list's."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def sweep_size(words: list[str]) -> int:
    """How many experiments the command's ``-S`` sweeps name (1 without a sweep)."""
    return max([len(alternatives(v.partition("=")[2]))
                for f, v in zip(words, words[1:], strict=False) if f == "-S"] or [1])


def with_overrides(words: list[str], pick: int = 0) -> dict:
    """params.yaml with every ``-S key=value`` of the command applied, as DVC does: of a
    sweep, value number ``pick`` (the last where it has fewer)."""
    params = copy.deepcopy(PARAMS)
    if any(w.endswith("bench_pipeline.py") for w in words):  # it sets datasets itself
        folder = "--folder" in words  # ... and with --folder, the dataset's section
        params["datasets"] = [words[words.index("--dataset") + 1] if "--dataset" in words
                              else "mysounds" if folder else "esc50"]
        if params["cnn"]["datasets"]:
            params["cnn"]["datasets"] = list(params["datasets"])
        if folder:
            params["data"][params["datasets"][0]] = {"kind": "folder", "path": words[2],
                                                     **FOLDER_DEFAULTS}
    for flag, value in zip(words, words[1:], strict=False):
        if flag != "-S":
            continue
        key, _, text = value.partition("=")
        *sections, last = key.lstrip("+").split(".")
        node = params
        for part in sections:
            assert isinstance(node.get(part), dict), f"-S {value}: no section {part!r}"
            node = node[part]
        assert key.startswith("+") or last in node, f"-S {value}: no key {key!r}"
        values = alternatives(text)
        node[last] = yaml.safe_load(values[min(pick, len(values) - 1)])
    return params


def source_of(words: list[str]) -> Path | None:
    """The project file a command runs: a script, a ``python -m`` module, or None."""
    if words[0] in ("python", "python3") and len(words) > 2 and words[1] == "-m":
        if words[2] in OTHER_MODULES:
            return None
        if words[2] == "soundclf":  # a user command: python -m soundclf COMMAND
            assert len(words) > 3 and words[3] in COMMANDS, f"no soundclf command in {words}"
            return Path(COMMANDS[words[3]].__file__)
        return REPO / (words[2].replace(".", "/") + ".py")
    if words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        return REPO / words[1]
    if words[0].startswith("scripts/"):
        return REPO / words[0]
    return None


def written_by_dvc_yaml() -> list[re.Pattern]:
    """Every output and metric path of dvc.yaml (and the files inside an output folder),
    ``${...}`` as any name."""
    paths = []
    for stage in DVC_YAML["stages"].values():
        block = stage.get("do", stage)
        for entry in block.get("outs", []) + block.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            # the path, or a file inside it (an output folder)
            paths.append(re.compile(re.sub(r"\\\$\\\{[^}]+\\\}", "[^/]+", re.escape(path))
                                    + "(/.+)?"))
    return paths


def test_the_docs_have_commands_to_check():
    found = every_command()
    assert len(found) > 30
    assert any(c[:3] == ["dvc", "exp", "run"] for _, c in found)


@pytest.mark.parametrize("where, words", every_command(), ids=lambda v: None)
def test_every_documented_command_is_valid(where, words):
    if "-S" in words:
        for pick in range(sweep_size(words)):
            assert problems(with_overrides(words, pick)) == [], where
    source = source_of(words)
    if source is not None:
        assert source.is_file(), f"{where}: {source.relative_to(REPO)} does not exist"
        text = source.read_text()
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert f'"{option}"' in text, f"{where}: {source.name} has no option {option}"
    if words[:2] == ["dvc", "metrics"] and len(words) > 2:
        outputs = written_by_dvc_yaml()
        for target in (w for w in words[3:] if "/" in w and w.endswith(".json")):
            assert any(p.fullmatch(target) for p in outputs), f"{where}: no output {target}"


def test_a_wrong_param_is_caught():
    """The check above fails for a param that does not exist or a value out of range."""
    with pytest.raises(AssertionError):
        with_overrides(["dvc", "exp", "run", "-S", "nn.layerz=[4]"])
    assert problems(with_overrides(["dvc", "exp", "run", "-S", "svc.C=-1"]))
    sweep = ["dvc", "exp", "run", "--queue", "-S", "svc.C=0.1,-1", "-S", "nn.layers=[8,4]"]
    assert sweep_size(sweep) == 2 and with_overrides(sweep)["nn"]["layers"] == [8, 4]
    assert not problems(with_overrides(sweep, 0)) and problems(with_overrides(sweep, 1))
