"""Where torch runs: a ``device`` param (``auto | cpu | cuda``) as a torch device."""

from __future__ import annotations

import torch

from soundclf.params import ParamError


def torch_device(name: str, key: str) -> torch.device:
    """``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``; ``key`` names the param."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"'{key}' is cuda, but torch sees no GPU here (use auto or cpu)")
    return torch.device(name)
