"""Where and how torch runs: a ``device`` param (``auto | cpu | cuda``) as a torch device,
a ``precision`` param (``auto | bf16 | fp32``) as the dtype of autocast."""

from __future__ import annotations

import torch

from soundclf.params import PRECISIONS, ParamError


def torch_device(name: str, key: str) -> torch.device:
    """``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``; ``key`` names the param."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"'{key}' is cuda, but torch sees no GPU here (use auto or cpu)")
    return torch.device(name)


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX instructions (oneDNN's kernels); elsewhere it is emulated,
    slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_dtype(precision: str, device: torch.device, key: str) -> torch.dtype | None:
    """The dtype a network computes in under ``torch.autocast`` (None: float32 throughout).

    ``precision``: ``bf16``, ``fp32``, or ``auto`` (bf16 where ``device`` has it natively);
    ``key`` names the param.
    """
    if precision not in PRECISIONS:
        raise ParamError(f"'{key}' is {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if bf16_native(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else None
