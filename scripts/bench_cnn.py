"""What the CNN's training costs, against a baseline on the same batches in the same run.

    python scripts/bench_cnn.py [--clips 600] [--epochs 3] [--threads 1 2] [--steps 20]

The cost does not depend on the values, so the inputs are seeded noise of the shape the
``spectrograms`` stage gives ESC-50 (64 mel bands x 216 frames), 50 classes, and the
network is ``cnn.training`` of params.yaml (its channels, batch size, precision). Two
comparisons, each timed alternately, a repeat of one then of the other, the best repeat
of each kept (a busy machine slows some repeats, not the code):

- a training step (forward, backward, AdamW) on one batch, on each of ``--threads``: the
  network as built (soundclf.models.cnn.ConvNet: each block's ReLU after its pool) against
  the textbook order, ReLU before the pool (the same values and gradients:
  tests/test_cnn.py);
- a quiet fit (no curves, as the out-of-fold fits and the later rounds' fits run) of
  ``--epochs`` epochs on ``--clips`` clips, watching a third as many, on the first of
  ``--threads``: the watched clips read in the last epoch only (what such a fit does,
  soundclf.models.fastai_base.ValidateLast) against every epoch.

Prints milliseconds a step and seconds a fit, and the ratio of each to its baseline.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundclf.models import fastai_base  # noqa: E402
from soundclf.models.cnn import SpectrogramCNN  # noqa: E402
from soundclf.params import load_params  # noqa: E402

BANDS, FRAMES, CLASSES = 64, 216, 50


def textbook(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with each block's ReLU moved before its pool."""
    other = copy.deepcopy(net)
    layers = list(other.features)
    for i in range(0, len(layers), 4):  # conv, batch norm, pool, ReLU
        layers[i + 2], layers[i + 3] = layers[i + 3], layers[i + 2]
    other.features = torch.nn.Sequential(*layers)
    return other


def stepper(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.AdamW(net.parameters(), fused=True)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return step


def best_of(runs: dict, repeats: int) -> dict[str, float]:
    """The best of ``repeats`` timings of each of ``runs`` (name: a function returning
    seconds), taken in turns."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: min(found) for name, found in times.items()}


def timed(function, count: int):
    def run() -> float:
        start = time.perf_counter()
        for _ in range(count):
            function()
        return (time.perf_counter() - start) / count
    return run


def bench_steps(model: SpectrogramCNN, threads: int, steps: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(model.batch_size, 1, BANDS, FRAMES, generator=generator)
    y = torch.randint(0, CLASSES, (model.batch_size,), generator=generator)
    net = model.network(np.zeros((1, BANDS, FRAMES), np.float32), CLASSES)
    runs = {"ReLU after the pool": stepper(net, x, y),
            "ReLU before the pool (baseline)": stepper(textbook(net), x, y)}
    for step in runs.values():  # warm-up: oneDNN picks its kernels
        for _ in range(3):
            step()
    return best_of({name: timed(step, steps) for name, step in runs.items()}, 3)


def bench_fits(model: SpectrogramCNN, threads: int, clips: int, epochs: int
               ) -> dict[str, float]:
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((clips + clips // 3, BANDS, FRAMES)).astype(np.float32)
    y = np.arange(len(x)) % CLASSES
    model = model.set_params(epochs=epochs)
    watch_every_epoch = fastai_base.ValidateLast.before_validate

    def fit(last_only: bool):
        def run() -> float:
            fastai_base.ValidateLast.before_validate = (
                watch_every_epoch if last_only else lambda cb: setattr(cb, "rows", None))
            start = time.perf_counter()
            model.fit(x[:clips], y[:clips], watch=(x[clips:], y[clips:]))
            return time.perf_counter() - start
        return run

    try:
        return best_of({"watched in the last epoch": fit(True),
                        "watched every epoch (baseline)": fit(False)}, 2)
    finally:
        fastai_base.ValidateLast.before_validate = watch_every_epoch


def report(title: str, found: dict[str, float], unit: str, scale: float) -> None:
    (new, new_s), (old, old_s) = found.items()
    print(f"{title}\n  {new:32s} {new_s * scale:9.1f} {unit}\n"
          f"  {old:32s} {old_s * scale:9.1f} {unit}\n  ratio {new_s / old_s:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="steps a timing")
    args = parser.parse_args(argv)
    params = load_params()
    model = SpectrogramCNN(seed=params["seed"], **params["cnn"]["training"])
    print(f"cnn.training: channels {model.channels}, batch {model.batch_size}, precision "
          f"{model.precision}; inputs {BANDS} x {FRAMES}, {CLASSES} classes")
    for threads in args.threads:
        report(f"one training step, {threads} thread(s)",
               bench_steps(model, threads, args.steps), "ms", 1000)
    report(f"a quiet fit: {args.epochs} epochs, {args.clips} clips, {args.clips // 3} watched, "
           f"{args.threads[0]} thread(s)",
           bench_fits(model, args.threads[0], args.clips, args.epochs), "s", 1)


if __name__ == "__main__":
    main()
