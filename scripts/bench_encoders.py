"""What a pretrained encoder costs: seconds per 1,000 five-second clips and peak memory.

    python scripts/bench_encoders.py ENCODER [ENCODER ...] [--clips 64] [--threads 2] [--batch 8]
                                     [--precision fp32 bf16] [--json OUT]

The cost does not depend on the weights' values, so the network is the real architecture
with random weights, built from its configuration with no download: CLAP
(``transformers.ClapConfig()``'s defaults, which are ``laion/clap-htsat-unfused``'s: HTSAT
audio tower and RoBERTa text tower, both built and loaded as the pipeline loads them) and
AST (``ASTConfig()``'s defaults, ``MIT/ast-finetuned-audioset-10-10-0.4593``'s); aisfx and
PANNs CNN14, the project's own networks (CNN14's fast form, as the pipeline runs it;
scripts/bench_panns.py compares it with the authors' code). Each of
``--clips`` five-second clips of noise at the feature extractor's rate goes through the
extractor (in this process, one clip at a time, as a worker of the embeddings stage does)
and the network, ``--batch`` clips a batch, on ``--threads`` threads; one warm-up batch (and
clip) is not counted; the CPU time (the extractor's, one thread; the network's over the threads)
is given beside the wall-clock time (on idle cores they agree; on a busy machine the CPU
time is the closer to what idle cores would take). Reading and resampling the audio is
left out (the same for every encoder).
Each precision runs in a process of its own, so that each peak (resident memory of the
whole process, sampled: scripts/peak_memory.py) is its own. The figures scale to 1,000
clips; ratios between encoders or precisions are what holds on a busy machine, where each
run shares its cores: compare figures of one run.

One function per encoder (:data:`BENCHES`): ``bench_<encoder>(clips, batch, precision)``
returns the seconds of the feature extractor and of the network.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

SECONDS = 5.0


def noise(n: int, sr: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(SECONDS * sr))).astype(np.float32) for _ in range(n)]


def timed_batches(run, inputs: list, batch: int, precision: str, autocast: bool = True
                  ) -> tuple[float, float]:
    """Seconds, wall-clock and this process's CPU time, to run every batch of ``inputs``
    after one warm-up batch (under bf16 autocast for ``precision`` bf16 if ``autocast``)."""
    import torch

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) \
        if precision == "bf16" and autocast else nullcontext()
    with torch.inference_mode(), autocast:
        run(inputs[:batch])
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(inputs), batch):
            run(inputs[i:i + batch])
    return time.perf_counter() - start, time.process_time() - cpu


def extracted(times: tuple[float, float]) -> dict:
    return {"extract_s": times[0], "extract_cpu_s": times[1]}


def network(times: tuple[float, float]) -> dict:
    return {"network_s": times[0], "network_cpu_s": times[1]}


def extract_all(extractor, clips: int, key: str) -> tuple[list, tuple[float, float]]:
    """A transformers feature extractor's ``key`` of each of ``clips`` noise clips at its
    rate, one at a time after a warm-up, and its seconds (wall-clock, CPU)."""
    audio = noise(clips, extractor.sampling_rate)
    extractor(audio[0], sampling_rate=extractor.sampling_rate)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    features = [extractor(y, sampling_rate=extractor.sampling_rate,
                          return_tensors="np")[key][0] for y in audio]
    return features, (time.perf_counter() - start, time.process_time() - cpu)


def bench_clap(clips: int, batch: int, precision: str) -> dict:
    import torch
    import transformers

    model = transformers.ClapModel(transformers.ClapConfig()).eval()
    extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc")  # unfused
    features, extract = extract_all(extractor, clips, "input_features")

    def run(part):
        x = torch.from_numpy(np.stack(part))
        return model.get_audio_features(input_features=x, is_longer=torch.zeros(
            (len(x), 1), dtype=torch.bool)).pooler_output

    return {"parameters": sum(p.numel() for p in model.parameters()),
            "audio_parameters": sum(p.numel() for n, p in model.named_parameters()
                                    if n.startswith("audio_")),
            **extracted(extract), **network(timed_batches(run, features, batch, precision))}


def bench_ast(clips: int, batch: int, precision: str) -> dict:
    import torch
    import transformers

    model = transformers.ASTModel(transformers.ASTConfig()).eval()
    features, extract = extract_all(transformers.ASTFeatureExtractor(), clips, "input_values")

    def run(part):
        return model(input_values=torch.from_numpy(np.stack(part))).pooler_output

    return {"parameters": sum(p.numel() for p in model.parameters()),
            **extracted(extract), **network(timed_batches(run, features, batch, precision))}


def bench_aisfx(clips: int, batch: int, precision: str) -> dict:
    """aisfx as the pipeline runs it by default (hop 1.0, blocks 3 and 4), for scale."""
    import torch

    from soundclf.features.encoders import AisfxFrontEnd, Cnn9

    net = Cnn9().eval().to(memory_format=torch.channels_last)
    front = AisfxFrontEnd()
    audio = noise(clips, front.sr)
    front.spectrogram(audio[0])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    windows = [front.windows(front.spectrogram(y), 1.0).astype(np.float32) for y in audio]
    extract = time.perf_counter() - start, time.process_time() - cpu

    def run(part):
        return net(torch.from_numpy(np.concatenate(part)), (3, 4))

    return {"parameters": sum(p.numel() for p in net.parameters()),
            **extracted(extract), **network(timed_batches(run, windows, batch, precision))}


def bench_panns_cnn14(clips: int, batch: int, precision: str) -> dict:
    """CNN14 as the pipeline runs it: its fast form (batch norms folded, weights in the
    compute dtype: bf16 without autocast), a 5 s clip one window of its own length."""
    import torch

    from soundclf.features.panns import Cnn14, PannsFrontEnd, embed_windows, folded

    net = Cnn14().eval().to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if precision == "bf16" else None
    fast = folded(net, dtype)
    front = PannsFrontEnd()
    audio = noise(clips, front.sr)
    start, cpu = time.perf_counter(), time.process_time()
    windows = [front.windows(y, front.sr, 1.0) for y in audio]
    extract = time.perf_counter() - start, time.process_time() - cpu

    def run(part):
        return embed_windows(fast, np.concatenate(part), len(part), dtype=dtype)

    return {"parameters": sum(p.numel() for p in net.parameters()),
            **extracted(extract),
            **network(timed_batches(run, windows, batch, precision, autocast=False))}


BENCHES = {"aisfx": bench_aisfx, "panns_cnn14": bench_panns_cnn14, "clap": bench_clap,
           "ast": bench_ast}


def one(encoder: str, clips: int, batch: int, precision: str, threads: int) -> dict:
    """One encoder at one precision in this process, with its peak memory."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from scripts.peak_memory import PeakMemory

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with PeakMemory() as memory:
        found = BENCHES[encoder](clips, batch, precision)
    scale = 1000 / clips
    return {"encoder": encoder, "precision": precision, "clips": clips, "batch": batch,
            "threads": threads, **found,
            "extract_s_per_1000": round(found["extract_s"] * scale, 1),
            "extract_cpu_s_per_1000": round(found["extract_cpu_s"] * scale, 1),
            "network_s_per_1000": round(found["network_s"] * scale, 1),
            # CPU seconds over the threads: what the wall-clock time would be on idle cores
            "network_cpu_s_per_1000_per_thread": round(
                found["network_cpu_s"] * scale / threads, 1),
            "total_s_per_1000": round((found["extract_s"] + found["network_s"]) * scale, 1),
            "peak_rss_mib": round(memory.peak / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", nargs="+", choices=list(BENCHES))
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--json", type=Path, help="append each result here, a line each")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one encoder, one precision
        print(json.dumps(one(args.encoder[0], args.clips, args.batch, args.precision[0],
                             args.threads)))
        return
    for encoder, precision in [(e, p) for e in args.encoder for p in args.precision]:
        out = subprocess.run([sys.executable, __file__, encoder, "--one", "--clips",
                              str(args.clips), "--batch", str(args.batch), "--threads",
                              str(args.threads), "--precision", precision],
                             capture_output=True, text=True, check=True).stdout
        result = out.strip().splitlines()[-1]
        print(result, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(result + "\n")


if __name__ == "__main__":
    main()
