"""Reading params.yaml and rejecting bad values before any work is done.

Every check names the key at fault and what is allowed, so a typo in
``dvc exp run -S ...`` fails in a second with a useful message, not an hour later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
SCALERS = ("none", "standard", "minmax", "robust")


class ParamError(ValueError):
    """A value in params.yaml that the pipeline cannot use."""


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def get(params: dict, key: str) -> Any:
    """``get(params, "nn.layers")``: a dotted key, with an error naming it when absent."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamError(f"params.yaml: missing key '{key}'")
        node = node[part]
    return node


def check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ParamError(f"params.yaml: '{key}' {message}")


def positive_number(params: dict, key: str, integer: bool = False) -> Any:
    value = get(params, key)
    kind = int if integer else (int, float)
    check(
        isinstance(value, kind) and not isinstance(value, bool) and value > 0,
        key, f"must be a positive {'integer' if integer else 'number'}, got {value!r}",
    )
    return value


def choice(params: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = get(params, key)
    check(value in allowed, key, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def layers(params: dict, key: str) -> list[int]:
    value = get(params, key)
    check(
        isinstance(value, list) and len(value) > 0
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value),
        key, f"must be a non-empty list of positive integers, got {value!r}",
    )
    return value
