"""Make tests/data/panns_reference.npz: CNN14 embeddings computed by the authors' own code.

    G=<a clone of github.com/qiuqiangkong/audioset_tagging_cnn>/.git
    mkdir -p /tmp/orig && git --git-dir=$G show HEAD:pytorch/models.py > /tmp/orig/models.py
    git --git-dir=$G show HEAD:pytorch/pytorch_utils.py > /tmp/orig/pytorch_utils.py
    pip download --no-deps torchlibrosa==0.1.0 -d /tmp/tl && unzip /tmp/tl/*.whl -d /tmp/tl
    python scripts/panns_reference.py /tmp/orig tests/data/panns_reference.npz \\
        --torchlibrosa /tmp/tl --commit $(git --git-dir=$G rev-parse HEAD)

A developer tool, run once outside the pipeline: it imports the authors' ``Cnn14``
(``pytorch/models.py``, with torchlibrosa's front end) from the given folders, loads the
seeded checkpoint of scripts/make_panns_checkpoint.py (seed 0) into it strictly, and stores,
in eval mode, float32, one clip at a time (each at its own length, as the authors' inference
does):

- ``<name>``: the ``embedding`` output (2,048 values) for each clip of
  :func:`reference_inputs`; ``<name>_tags``: its ``clipwise_output`` (527 values);
- ``logmel``: the output of the original's ``logmel_extractor`` for ``short`` (frames, 64);
- ``melW`` and ``stft_real_rows``/``stft_imag_rows`` (rows ``STFT_ROWS``): the front-end
  tensors torchlibrosa computes when the original network is built (before loading);
- ``state_digest``: the checkpoint's content hash (scripts/make_panns_checkpoint.py's
  ``state_digest``) and the versions used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.make_panns_checkpoint import make_checkpoint, state_digest  # noqa: E402

SR = 32000
STFT_ROWS = [1, 37, 511]


def reference_inputs() -> dict[str, np.ndarray]:
    """The fixed clips, float32 at 32 kHz: seeded noise, sines, a chirp."""
    t = np.arange(10 * SR) / SR
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1.0, 1.0, 10 * SR)
    chirp = np.sin(2 * np.pi * (200 * t + 300 * t**2))
    return {name: y.astype(np.float32) for name, y in {
        "short": 0.3 * np.sin(2 * np.pi * 1000 * t[:SR // 2]),        # 0.5 s sine, 1 kHz
        "noise_1s": 0.5 * noise[:SR],                                 # 1 s uniform noise
        "sine_5s": 0.5 * np.sin(2 * np.pi * 440 * t[:5 * SR]),        # 5 s sine, 440 Hz
        "mix_10s": 0.3 * chirp + 0.2 * np.sin(2 * np.pi * 3000 * t)   # 10 s chirp + sine
                   + 0.05 * noise,                                    # + noise
    }.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original_dir", type=Path,
                        help="folder holding the original models.py and pytorch_utils.py")
    parser.add_argument("out", type=Path)
    parser.add_argument("--torchlibrosa", type=Path, help="folder holding torchlibrosa/")
    parser.add_argument("--commit", default="", help="the original repository's commit")
    args = parser.parse_args()
    if args.torchlibrosa:
        sys.path.insert(0, str(args.torchlibrosa))
    sys.path.insert(0, str(args.original_dir))
    import librosa
    import torchlibrosa
    from models import Cnn14

    torch.manual_seed(0)
    net = Cnn14(sample_rate=SR, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                fmax=14000, classes_num=527)
    built = {k: v.detach().clone() for k, v in net.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_checkpoint(Path(tmp) / "Cnn14_seeded.pth")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    digest = state_digest(checkpoint["model"])
    net.load_state_dict(checkpoint["model"], strict=True)
    net.eval()
    out = {
        "state_digest": np.array(digest),
        "torch": np.array(torch.__version__),
        "librosa": np.array(librosa.__version__),
        "torchlibrosa": np.array(getattr(torchlibrosa, "__version__", "0.1.0")),
        "commit": np.array(args.commit),
        "melW": built["logmel_extractor.melW"].numpy(),
        "stft_real_rows": built["spectrogram_extractor.stft.conv_real.weight"][STFT_ROWS, 0]
        .numpy(),
        "stft_imag_rows": built["spectrogram_extractor.stft.conv_imag.weight"][STFT_ROWS, 0]
        .numpy(),
    }
    with torch.inference_mode():
        for name, y in reference_inputs().items():
            result = net(torch.from_numpy(y)[None])
            out[name] = result["embedding"][0].numpy()
            out[f"{name}_tags"] = result["clipwise_output"][0].numpy()
        x = torch.from_numpy(reference_inputs()["short"])[None]
        out["logmel"] = net.logmel_extractor(net.spectrogram_extractor(x))[0, 0].numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    for name in reference_inputs():
        e = out[name]
        print(f"{name}: mean {e.mean():.4f} max {e.max():.4f} nonzero {(e > 0).mean():.2f}")
    print(f"{args.out}: {args.out.stat().st_size} bytes, state digest {digest}")


if __name__ == "__main__":
    main()
