"""Write a stand-in for PANNs' ``Cnn14_mAP=0.431.pth``: its layout, seeded random weights.

    python scripts/make_panns_checkpoint.py /tmp/panns/Cnn14_seeded.pth

The published checkpoint cannot be downloaded here; this file has its layout (a dict whose
``model`` entry is CNN14's state dict: the same 84 keys, shapes and dtypes, 81,853,340
values, about 327 MB), filled by a documented procedure anyone can rerun:

``torch.manual_seed(seed)`` (0), then for each key in sorted order:

- the front end's tensors (``spectrogram_extractor.stft.conv_real.weight``,
  ``..conv_imag.weight``, ``logmel_extractor.melW``) as torchlibrosa computes them
  (soundclf.features.panns.PannsFrontEnd), so they are the real ones;
- convolution and linear weights: He-normal, N(0, 2 / fan_in);
- biases (linear layers' and batch norms'): 0; batch norm weights: 1;
- batch norm running variances: uniform in [0.5, 1.5); running means: N(0, 0.1^2), except
  ``bn0``'s (it normalizes log-mel values in dB): mean uniform in [-60, -20) dB and
  variance uniform in [100, 400) dB^2, so that the input of the first block is of order 1;
- ``num_batches_tracked``: 0.

With these, activations stay of order 1 through the blocks (ReLU after He-normal
convolutions keeps the second moment), so the embeddings test the arithmetic everywhere.
tests/test_panns.py and scripts/panns_reference.py call :func:`make_checkpoint`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf.features.panns import PannsFrontEnd, expected_shapes  # noqa: E402


def seeded_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """CNN14's state dict filled by the procedure above."""
    front = {k: torch.from_numpy(v) for k, v in PannsFrontEnd().buffers().items()}
    torch.manual_seed(seed)
    state = {}
    for key, shape in sorted(expected_shapes().items()):
        if key in front:
            value = front[key]
        elif key.endswith("num_batches_tracked"):
            value = torch.zeros(shape, dtype=torch.int64)
        elif key == "bn0.running_mean":
            value = torch.empty(shape).uniform_(-60.0, -20.0)
        elif key == "bn0.running_var":
            value = torch.empty(shape).uniform_(100.0, 400.0)
        elif key.endswith("running_mean"):
            value = torch.randn(shape) * 0.1
        elif key.endswith("running_var"):
            value = torch.empty(shape).uniform_(0.5, 1.5)
        elif key.endswith("bias"):
            value = torch.zeros(shape)
        elif len(shape) >= 2:  # convolution and linear weights: He-normal
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape) * math.sqrt(2.0 / fan_in)
        else:  # batch norm weights
            value = torch.ones(shape)
        assert tuple(value.shape) == shape, key
        state[key] = value
    # the network's own order, as torch saves a module's state dict
    return {key: state[key] for key in expected_shapes()}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the keys, dtypes, shapes and values in key order (the file's own SHA-256
    also depends on its name: torch.save names the archive's folder after it)."""
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write the checkpoint to ``path`` (its folder made if needed); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": seeded_state(seed)}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_checkpoint(args.out, args.seed)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
