"""Reading params.yaml and rejecting bad values before any work is done.

:data:`SCHEMA` names every key the pipeline reads and what it accepts. Every stage loads
its params through :func:`load_params`, which checks the whole file: a mistyped key, a
missing one or a bad value stops the stage at once with every problem listed, each naming
the key and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PARAMS_FILE = "params.yaml"
SCALERS = ("none", "standard", "minmax", "robust")
PRECISIONS = ("auto", "bf16", "fp32")
CLASS_WEIGHTS = ("none", "balanced")
COMBINATIONS = ("weighted", "vote")  # ensemble.combine (soundclf.models.ensemble)
METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")  # every model's scores

# A validator returns what is wrong with a value, or None when it is fine.
Validator = Callable[[Any], str | None]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``1e-06`` as a float (YAML 1.2).

    DVC writes small floats that way (``dvc exp run -S nn.training.lr=0.00005`` puts
    ``lr: 5e-05`` in params.yaml); YAML 1.1, which PyYAML follows, wants a dot and would
    read a string.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class ParamError(ValueError):
    """A value in params.yaml that the pipeline cannot use."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int) -> Validator:
    return lambda v: None if _is_int(v) and v >= minimum else (
        f"must be an integer >= {minimum}")


def positive_number(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 else "must be a positive number"


def fraction(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v < 1 else "must be a fraction between 0 and 1"


def share(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v <= 1 else "must be a fraction in (0, 1]"


def probability(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= v < 1 else "must be a probability in [0, 1)"


def one_of(*allowed: Any) -> Validator:
    listing = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
    return lambda v: None if any(v is a or (v == a and type(v) is type(a)) for a in allowed) else (
        f"must be one of {listing}")


def layer_list(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(_is_int(n) and n > 0 for n in v)
    return None if ok else "must be a non-empty list of positive integers, e.g. [200, 100]"


def location(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else (
        "must be an http(s) or file:// URL, or a local path")


def sha256_digest(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v)
    return None if ok else "must be a 64-character hex SHA-256 digest"


def sha256(v: Any) -> str | None:
    return None if v is None or not sha256_digest(v) else (
        "must be null or a 64-character hex SHA-256 digest")


def optional(check: Validator) -> Validator:
    """``check``, or null."""
    return lambda v: None if v is None else check(v)


def hub_repo(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", v)
    return None if ok else "must be a Hugging Face Hub repository, owner/name"


def revision(v: Any) -> str | None:
    ok = v is None or (isinstance(v, str) and re.fullmatch(r"[0-9a-f]{40}", v))
    return None if ok else "must be null (the newest, unpinned) or a 40-character commit hash"


def file_digests(v: Any) -> str | None:
    """A Hub repository's files and their SHA-256 (soundclf.features.hub)."""
    ok = v is None or (isinstance(v, dict) and v and all(
        isinstance(k, str) and k and not sha256_digest(d) for k, d in v.items()))
    return None if ok else ("must be null (not checked) or a mapping of each file of the "
                            "repository to its 64-character hex SHA-256")


def encoder_list(v: Any) -> str | None:
    """``embeddings.encoders``: names among the encoders with a ``weights`` section."""
    ok = isinstance(v, list) and v and all(e in ENCODERS for e in v) and len(set(v)) == len(v)
    return None if ok else (f"must be a non-empty list of distinct encoders from "
                            f"{', '.join(ENCODERS)}, e.g. [aisfx]")


def n_jobs(v: Any) -> str | None:
    return None if _is_int(v) and v != 0 else "must be a non-zero integer (-1 = all cores)"


def members(v: Any) -> str | None:
    """Names checked against the model registry (soundclf.models) when the ensemble is built."""
    ok = (isinstance(v, list) and len(v) >= 2 and all(isinstance(m, str) for m in v)
          and len(set(v)) == len(v))
    return None if ok else (
        "must be a list of two or more distinct model names, e.g. [svc, nn-2layer]")


def weight_decay(v: Any) -> str | None:
    ok = v is None or (_is_number(v) and v >= 0)
    return None if ok else "must be null (fastai's default) or a non-negative number"


def grid_of(section: str) -> Validator:
    """A search grid over ``section``: each key one of its own, each value null (not
    searched) or a non-empty list of values that key accepts. Checked against SCHEMA when
    called."""

    def check(grid: Any) -> str | None:
        if not isinstance(grid, dict):
            return f"must be a mapping of {section} keys to lists of values, e.g. {{C: [0.1, 1]}}"
        for key, values in grid.items():
            if f"{section}.{key}" not in SCHEMA:
                allowed = [k.removeprefix(f"{section}.") for k in SCHEMA
                           if k.startswith(f"{section}.")]
                return f"key {key!r} cannot be tuned (tunable: {', '.join(allowed)})"
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                return f"{key}: must be null or a non-empty list of candidate values"
            for value in values:
                if why := SCHEMA[f"{section}.{key}"](value):
                    return f"{key}: {value!r} {why}"
        return None

    return check


SCHEMA: dict[str, Validator] = {
    "seed": integer(0),
    "datasets": lambda v: None,  # checked against the data sections in validate()
    "data.esc50.url": location,
    "data.esc50.sha256": sha256,
    "data.esc50.valid_fold": integer(1),
    "data.esc50.cv": one_of(True, False),
    "data.esc10.url": location,
    "data.esc10.sha256": sha256,
    "data.esc10.valid_fold": integer(1),
    "data.esc10.cv": one_of(True, False),
    "data.freesound.audio_url": location,
    "data.freesound.audio_sha256": sha256,
    "data.freesound.meta_url": location,
    "data.freesound.meta_sha256": sha256,
    "data.freesound.valid_size": fraction,
    "data.freesound.split_seed": integer(0),
    "data.freesound.repeats": integer(1),
    "features.sr": integer(1),
    "features.duration": positive_number,
    "features.n_fft": integer(16),
    "features.hop_length": integer(1),
    "features.n_mels": integer(1),
    "features.cqt_bins": integer(1),
    "features.n_jobs": n_jobs,
    "features.batch_size": integer(1),
    "features.backend": one_of("local", "dask"),
    "features.scheduler": lambda v: None if v is None or (isinstance(v, str) and v) else (
        "must be null or a Dask scheduler address such as tcp://host:8786"),
    "features.on_error": one_of("fail", "skip"),
    "normalize.scaler": one_of(*SCALERS),
    "svc.C": positive_number,
    "svc.max_iter": integer(1),
    "svc.dual": one_of(True, False, "auto"),
    "svc.class_weight": one_of(*CLASS_WEIGHTS),
    "svc.block_weights": one_of("equal", "none"),
    "nn.layers": layer_list,
    "nn.training.epochs": integer(1),
    "nn.training.lr": positive_number,
    "nn.training.batch_size": integer(1),
    "nn.training.ps": probability,
    "nn.training.embed_p": probability,
    "nn.training.wd": weight_decay,
    "nn.training.class_weights": one_of(*CLASS_WEIGHTS),
    "nn.training.grad_clip": optional(positive_number),
    "nn.training.early_stopping": optional(integer(1)),
    "nn.training.early_stopping_valid": fraction,
    "nn_deep.layers": layer_list,
    "spectrograms.sr": integer(1),
    "spectrograms.duration": positive_number,
    "spectrograms.n_fft": integer(16),
    "spectrograms.hop_length": integer(1),
    "spectrograms.n_mels": integer(1),
    "cnn.datasets": lambda v: None,  # checked against datasets in problems()
    "cnn.training.channels": layer_list,
    "cnn.training.dropout": probability,
    "cnn.training.epochs": integer(1),
    "cnn.training.lr": positive_number,
    "cnn.training.batch_size": integer(1),
    "cnn.training.wd": weight_decay,
    "cnn.training.shift": probability,
    "cnn.training.freq_mask": integer(0),
    "cnn.training.time_mask": integer(0),
    "cnn.training.mixup": lambda v: None if _is_number(v) and v >= 0 else (
        "must be a non-negative number (0: no mixup)"),
    "cnn.training.class_weights": one_of(*CLASS_WEIGHTS),
    "cnn.training.grad_clip": optional(positive_number),
    "cnn.training.early_stopping": optional(integer(1)),
    "cnn.training.early_stopping_valid": fraction,
    "cnn.training.device": one_of("auto", "cpu", "cuda"),
    "cnn.training.precision": one_of(*PRECISIONS),  # soundclf.devices.autocast_dtype
    # each encoder's weights (soundclf.features.encoders.ENCODERS has one entry per name):
    # a checkpoint file (url, sha256) or a Hugging Face Hub repository (repo, revision,
    # url: a local copy, sha256: each file's)
    "weights.aisfx.url": location,
    "weights.aisfx.sha256": sha256_digest,  # the checkpoint's, always checked
    "weights.panns_cnn14.url": location,
    "weights.panns_cnn14.sha256": sha256,  # the checkpoint's; null: not checked, warned
    "weights.clap.repo": hub_repo,
    "weights.clap.revision": revision,
    "weights.clap.url": optional(location),
    "weights.clap.sha256": file_digests,
    "weights.ast.repo": hub_repo,
    "weights.ast.revision": revision,
    "weights.ast.url": optional(location),
    "weights.ast.sha256": file_digests,
    "embeddings.encoders": encoder_list,
    "embeddings.hop": lambda v: None if _is_number(v) and 0.01 <= v <= 1 else (
        "must be a fraction of a window from 0.01 to 1"),
    "embeddings.pooling": lambda v: None if isinstance(v, list) and v and len(set(v)) == len(
        v) and set(v) <= {"mean", "max", "std"} else (
        "must be a non-empty list of distinct statistics from mean, max, std"),
    "embeddings.blocks": lambda v: None if isinstance(v, list) and v and all(
        _is_int(b) and 1 <= b <= 4 for b in v) and len(set(v)) == len(v) else (
        "must be a non-empty list of distinct network blocks from 1 to 4, e.g. [4]"),
    "embeddings.peak_normalize": one_of(True, False),
    "embeddings.batch_size": integer(1),
    "embeddings.device": one_of("auto", "cpu", "cuda"),
    "embeddings.precision": one_of(*PRECISIONS),  # soundclf.devices.autocast_dtype
    "zeroshot.datasets": lambda v: None,  # checked against datasets in problems()
    "zeroshot.template": lambda v: None if isinstance(v, str) and v.count("{}") == 1 else (
        "must be a prompt with one {} where the class name goes, e.g. 'This is a sound of {}.'"),
    "pretrained.C": positive_number,
    "pretrained.max_iter": integer(1),
    "pretrained.class_weight": one_of(*CLASS_WEIGHTS),
    "ensemble.members": members,
    "ensemble.combine": one_of(*COMBINATIONS),
    "oof.folds": optional(integer(0)),
    "oof.epochs": share,
    # architectures (nn.layers, nn_deep.layers) are compared as experiments, not tuned
    "tune.svc": grid_of("svc"),
    "tune.nn": grid_of("nn.training"),
    "tune.cnn": grid_of("cnn.training"),
    "tune.pretrained": grid_of("pretrained"),
    "tune.folds": integer(2),
    "tune.max_folds": optional(integer(1)),
    "tune.n_jobs": n_jobs,
    "tune.metric": one_of(*METRICS),
}
DATASETS = tuple(dict.fromkeys(k.split(".")[1] for k in SCHEMA if k.startswith("data.")))
# the encoders, each with a weights section (soundclf.features.encoders implements them)
ENCODERS = tuple(dict.fromkeys(k.split(".")[1] for k in SCHEMA if k.startswith("weights.")))
# what replaced a key that users' params files may still have
RENAMED = {"embeddings.encoder": "'embeddings.encoder' is now 'embeddings.encoders', a "
                                 "list: e.g. encoders: [aisfx]"}

# A dataset of the folder kind (soundclf.data.folder): ``data.<name>`` with ``kind: folder``,
# any name of letters, digits, ``_`` and ``-`` but the built-in ones. Its keys, and the
# value each takes when left out.
FOLDER_SCHEMA: dict[str, Validator] = {
    "kind": one_of("folder"),
    "path": location,
    "sha256": sha256,
    "valid_fold": integer(1),
    "cv": one_of(True, False),
    "folds": integer(2),
    "split_seed": integer(0),
    "small_classes": one_of("fail", "train"),
}
FOLDER_DEFAULTS = {"sha256": None, "valid_fold": 1, "cv": False, "folds": 5, "split_seed": 42,
                   "small_classes": "fail"}
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def folder_datasets(params: dict) -> dict[str, dict]:
    """The ``data`` sections of kind ``folder``, by dataset name."""
    data = params.get("data") if isinstance(params, dict) else None
    return {name: section for name, section in (data or {}).items()
            if isinstance(section, dict) and "kind" in section}


def folder_problems(name: str, section: dict) -> list[str]:
    """What is wrong with the ``data.<name>`` section of a folder dataset."""
    found = []
    if name in DATASETS:
        found.append(f"'data.{name}.kind' is not a key of the built-in dataset {name}; give "
                     f"your own dataset another name")
    elif not DATASET_NAME.fullmatch(str(name)):
        found.append(f"'data.{name}': a dataset name must be letters, digits, _ and - "
                     f"(it names stages and folders)")
    for key in section.keys() - FOLDER_SCHEMA.keys():
        close = difflib.get_close_matches(key, list(FOLDER_SCHEMA), n=1)
        found.append(f"'data.{name}.{key}' is not a known key of a folder dataset"
                     + (f" (did you mean '{close[0]}'?)" if close else ""))
    if "path" not in section:
        found.append(f"'data.{name}.path' is missing: the folder, archive or URL of the "
                     f"recordings")
    for key, validator in FOLDER_SCHEMA.items():
        if key in section and (why := validator(section[key])):
            found.append(f"'data.{name}.{key}' {why}; got {section[key]!r}")
    return found


def flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    """``{"nn": {"layers": [9]}}`` -> ``{"nn.layers": [9]}``; lists, scalars, search
    grids (``tune.<model>``) and other mappings that SCHEMA reads whole (a Hub
    repository's file digests) are leaves."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not name.startswith("tune.") \
                and name not in SCHEMA:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def problems(params: dict) -> list[str]:
    """Every problem with ``params``, one line each; empty when it is valid."""
    folders = folder_datasets(params)
    flat = {k: v for k, v in flatten(params).items()
            if not any(k.startswith(f"data.{name}.") for name in folders)}
    found = []
    for key in flat.keys() - SCHEMA.keys():
        if key in RENAMED:
            found.append(RENAMED[key])
            continue
        close = difflib.get_close_matches(key, list(SCHEMA), n=1)
        found.append(f"'{key}' is not a known key" + (f" (did you mean '{close[0]}'?)"
                                                      if close else ""))
    found += [f"'{key}' is missing" for key in SCHEMA.keys() - flat.keys()]
    for key, validator in SCHEMA.items():
        if key in flat and (why := validator(flat[key])):
            found.append(f"'{key}' {why}; got {flat[key]!r}")
    for name, section in folders.items():
        found += folder_problems(name, section)
    names = flat.get("datasets")
    known = [*DATASETS, *(n for n in folders if n not in DATASETS)]
    if not (isinstance(names, list) and names and set(names) <= set(known)
            and len(set(names)) == len(names)):
        unknown = sorted(set(names) - set(known)) if isinstance(names, list) else []
        hint = (f" (for your own recordings, add a data.{unknown[0]} section with kind: "
                f"folder and path: docs/folders.md)" if unknown else "")
        found.append(f"'datasets' must be a non-empty list of distinct names from "
                     f"{', '.join(known)}; got {names!r}{hint}")
    elif "cnn.datasets" in flat and not (
            isinstance(flat["cnn.datasets"], list) and set(flat["cnn.datasets"]) <= set(names)
            and len(set(flat["cnn.datasets"])) == len(flat["cnn.datasets"])):
        found.append(f"'cnn.datasets' must be a list of distinct names from datasets "
                     f"({', '.join(names)}), [] for none; got {flat['cnn.datasets']!r} "
                     f"(with -S 'datasets=[...]', set -S 'cnn.datasets=[...]' too, e.g. "
                     f"-S 'cnn.datasets=[{','.join(names)}]')")
    elif "cnn" in (flat.get("ensemble.members") or []) and (
            missing := [n for n in names if n not in (flat.get("cnn.datasets") or [])]):
        found.append(f"'ensemble.members' has cnn, which runs only for the datasets of "
                     f"'cnn.datasets': add {', '.join(missing)} to it (e.g. -S "
                     f"'cnn.datasets=[{','.join(names)}]'), or take cnn out of "
                     f"'ensemble.members'")
    if "zeroshot.datasets" in flat and isinstance(names, list):
        chosen = flat["zeroshot.datasets"]
        if not (isinstance(chosen, list) and set(chosen) <= set(names)
                and len(set(chosen)) == len(chosen)):
            found.append(f"'zeroshot.datasets' must be a list of distinct names from datasets "
                         f"({', '.join(map(str, names))}), [] for none; got {chosen!r}")
        elif chosen and "clap" not in (flat.get("embeddings.encoders") or []):
            found.append("'zeroshot.datasets' needs clap's embeddings: add clap to "
                         "'embeddings.encoders'")
    return sorted(found)


def validate(params: dict, source: str = PARAMS_FILE) -> dict:
    if not isinstance(params, dict):
        raise ParamError(f"{source}: expected a mapping of sections, got {params!r}")
    found = problems(params)
    if found:
        raise ParamError(f"{source}: " + "\n  ".join(["invalid parameters:", *found]))
    for section in folder_datasets(params).values():  # the keys left out take their default
        for key, value in FOLDER_DEFAULTS.items():
            section.setdefault(key, value)
    return params


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The validated contents of params.yaml."""
    try:
        with open(path) as f:
            params = read_yaml(f)
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from None
    return validate(params, str(path))


def read_yaml(source: Any) -> Any:
    """YAML text or a stream, read as params.yaml is (``1e-06`` a float, ``null`` None)."""
    return yaml.load(source, Loader=_Loader)


def format_value(value: Any) -> str:
    """A value as ``dvc exp run -S key=...`` and :func:`read_yaml` read it back.

    Floats positional (``0.000001``, not ``1e-06``), lists without spaces (``[400,200]``),
    strings bare, ``null``, ``true``, ``false``.
    """
    if isinstance(value, float):
        return np.format_float_positional(value, trim="0")
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def get(params: dict, key: str) -> Any:
    """``get(params, "nn.layers")``: the value of a dotted key."""
    node: Any = params
    for part in key.split("."):
        node = node[part]
    return node


def with_values(params: dict, section: str, values: dict) -> dict:
    """A copy of ``params`` with ``values`` set in ``section`` (a dotted key such as
    ``nn.training``)."""
    changed = copy.deepcopy(params)
    get(changed, section).update(values)
    return changed


def check(ok: bool, key: str, message: str) -> None:
    """For checks that need the data (a fold that must exist in the dataset, say)."""
    if not ok:
        raise ParamError(f"params.yaml: '{key}' {message}")
