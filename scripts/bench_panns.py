"""PANNs CNN14 against the authors' code: seconds per 1,000 clips and peak memory, batched.

    python scripts/bench_panns.py panns_cnn14 --clips 128 --precision fp32 bf16 \\
        --original /tmp/orig --torchlibrosa /tmp/tl

Each encoder embeds the same ``--clips`` synthetic clips of ``--seconds`` (5 s: seeded noise
plus a sine, at the encoder's rate), ``--batch-size`` at a time on ``--threads`` threads
(2), once per precision (``fp32``; ``bf16``: the encoder's bfloat16 path), and the figure
is scaled to 1,000 clips. The cost does not depend on the weights' values, so an encoder
runs with random weights of its real architecture unless ``--weights`` names a checkpoint
(CNN14: scripts/make_panns_checkpoint.py's seeded stand-in, written to a temporary folder).

With ``--original DIR`` (a folder holding the authors' ``models.py`` and
``pytorch_utils.py`` from qiuqiangkong/audioset_tagging_cnn, and torchlibrosa importable or
in ``--torchlibrosa DIR``), their ``Cnn14`` runs on the same clips with the same weights,
float32 as their inference does, as the baseline; each figure's ratio to it is printed.

Every measurement runs in a process of its own (so each peak is its own: the process's
maximum resident memory, ru_maxrss, model and loading included), after one warm-up batch;
the runs are interleaved round by round (``--rounds``), so a machine shared with other work
slows them alike: compare ratios within a run. The load average is printed before and after.

Adding an encoder: a function building its :class:`Subject` in :data:`SUBJECTS`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Subject:
    """An encoder ready to run: its sample rate and a batch of clips -> embeddings."""

    sr: int
    embed: Callable[[list[np.ndarray]], np.ndarray]


def panns_cnn14(args: argparse.Namespace, precision: str, device: torch.device) -> Subject:
    """This project's CNN14 (soundclf.features.panns), its fast form in ``precision``."""
    from soundclf.features.panns import SR, PannsFrontEnd, embed_windows, load_embedder

    dtype = torch.bfloat16 if precision == "bf16" else None
    net = load_embedder(args.weights, device, dtype)
    front = PannsFrontEnd()

    def embed(clips: list[np.ndarray]) -> np.ndarray:
        windows = [front.windows(y, SR) for y in clips]
        values = embed_windows(net, [w for ws in windows for w in ws], len(clips), device,
                               dtype)
        ends = np.cumsum([len(w) for w in windows])[:-1]
        return np.stack([part.mean(axis=0) for part in np.split(values, ends)])

    return Subject(SR, embed)


def panns_cnn14_original(args: argparse.Namespace, precision: str,
                         device: torch.device) -> Subject:
    """The authors' Cnn14 (with torchlibrosa), float32, each clip whole, as they run it."""
    if precision != "fp32":
        raise ValueError("the original runs in float32 only")
    if args.torchlibrosa:
        sys.path.insert(0, str(args.torchlibrosa))
    sys.path.insert(0, str(args.original))
    from models import Cnn14

    net = Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                fmax=14000, classes_num=527)
    net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True)
                        ["model"], strict=True)
    net = net.to(device).eval()

    @torch.inference_mode()
    def embed(clips: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(clips)).to(device)
        return net(x)["embedding"].cpu().numpy()

    return Subject(32000, embed)


SUBJECTS: dict[str, Callable[[argparse.Namespace, str, torch.device], Subject]] = {
    "panns_cnn14": panns_cnn14,
    "panns_cnn14_original": panns_cnn14_original,
}


def clips(n: int, seconds: float, sr: int) -> list[np.ndarray]:
    """``n`` seeded clips: uniform noise at 0.1 plus a sine of 100 to 4,000 Hz at 0.3."""
    rng = np.random.default_rng(0)
    t = np.arange(int(round(seconds * sr))) / sr
    return [(0.1 * rng.uniform(-1, 1, len(t)) + 0.3 * np.sin(2 * np.pi * f * t))
            .astype(np.float32) for f in rng.uniform(100, 4000, n)]


def run_one(args: argparse.Namespace) -> dict:
    """One measurement, in this process: load, warm up, time all clips."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    subject = SUBJECTS[args.encoder](args, args.precision, device)
    load = time.perf_counter() - start
    data = clips(args.clips, args.seconds, subject.sr)
    subject.embed(data[:args.batch_size])  # warm-up: oneDNN's kernels for these shapes
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = [subject.embed(data[i:i + args.batch_size])
           for i in range(0, len(data), args.batch_size)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    values = np.concatenate(out)
    return {"encoder": args.encoder, "precision": args.precision, "seconds": elapsed,
            "per_1000": elapsed / len(data) * 1000, "load_s": load, "dim": values.shape[1],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "finite": bool(np.isfinite(values).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoders", nargs="*", help=", ".join(
        s for s in SUBJECTS if not s.endswith("_original")))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--weights", type=Path, help="a checkpoint (default: seeded)")
    parser.add_argument("--original", type=Path, help="folder of the authors' models.py")
    parser.add_argument("--torchlibrosa", type=Path, help="folder holding torchlibrosa/")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        for key, value in json.loads(args.child).items():
            setattr(args, key, Path(value) if key in ("weights", "original", "torchlibrosa")
                    and value else value)
        print(json.dumps(run_one(args)))
        return
    unknown = [e for e in args.encoders if e not in SUBJECTS or e.endswith("_original")]
    if unknown or not args.encoders:
        parser.error(f"name encoders among {', '.join(SUBJECTS)} (not {unknown})")

    with tempfile.TemporaryDirectory() as tmp:
        if args.weights is None and any(e.startswith("panns") for e in args.encoders):
            from scripts.make_panns_checkpoint import make_checkpoint
            args.weights = make_checkpoint(Path(tmp) / "Cnn14_seeded.pth")
        runs = [(e, p) for e in args.encoders for p in args.precision]
        if args.original:
            runs.insert(0, ("panns_cnn14_original", "fp32"))
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
        print(f"{cpu}, {args.threads} threads, device {args.device}, torch {torch.__version__}"
              f"; {args.clips} clips of {args.seconds:g} s, batches of {args.batch_size}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        results: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
        for _ in range(args.rounds):
            for encoder, precision in runs:
                child = {k: str(v) if isinstance(v, Path) else v
                         for k, v in vars(args).items() if k not in ("child", "encoders")}
                child.update(encoder=encoder, precision=precision)
                done = subprocess.run([sys.executable, __file__, "--child", json.dumps(child)],
                                      capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{encoder} {precision} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[encoder, precision].append(result)
                print(f"  {encoder} {precision}: {result['per_1000']:.0f} s per 1,000 clips, "
                      f"peak {result['peak_mb']:.0f} MB (load {result['load_s']:.1f} s)",
                      flush=True)
        print(f"load average {os.getloadavg()[0]:.1f}")
        base = results.get(("panns_cnn14_original", "fp32"))
        print("| encoder | precision | s per 1,000 clips | ratio to the original | peak MB |")
        print("|---|---|---|---|---|")
        for (encoder, precision), rs in results.items():
            ratios = ([r["per_1000"] / b["per_1000"] for r, b in zip(rs, base, strict=True)]
                      if base else [])
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
            print(f"| {encoder} | {precision} | "
                  f"{statistics.median(r['per_1000'] for r in rs):.0f} | {ratio} | "
                  f"{max(r['peak_mb'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
