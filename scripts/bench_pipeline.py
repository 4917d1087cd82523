"""Time every stage of the real dvc.yaml on real recordings, stage by stage.

    python scripts/bench_pipeline.py RECORDINGS [--dataset esc50] [-S key=value ...]
        [--naive] [--skip STAGE ...] [--workdir DIR] [--clips N] [--labels 50]
    python scripts/bench_pipeline.py RECORDINGS --folder [--dataset mysounds] [-S ...]

RECORDINGS is a folder in the ESC-50 layout (``ESC-50-master/{audio,meta}`` or the
folder inside): the real dataset, or real recordings laid out by a development set's
``make_archive.py``. They are used as they are, with their own labels and official folds.
With ``--folder`` it is a dataset of the folder kind instead (label folders, or a
``metadata.csv``; docs/folders.md), read in place as ``data.<dataset>: {kind: folder,
path: RECORDINGS}`` (``-S data.<dataset>.valid_fold=5`` and the like set its other keys).

The project (what git would commit) is copied into a fresh git repository in the
workdir, params.yaml points ``data.<dataset>.url`` at the dataset (``datasets:
[<dataset>]``), ``-S`` values are set as ``dvc exp run -S`` would, and each stage runs
alone with ``dvc repro -s``, in the order of the DAG, timed as a whole process (DVC's own
start-up included). Prints a table of stage times with the totals, each stage's peak memory (its
process tree's resident and proportional set sizes, scripts.peak_memory) beside the size of
its data inputs, every model's accuracy
(mean ± std over the rounds, and each round's), and with ``--naive`` the feature stage
against the original one-clip-at-a-time loop over the same clips, whole process.

``--clips N`` measures cost at a larger scale only: the recordings are cycled to N clips,
each copy with a small gain change (-3 to +3 dB), spread over ``--labels`` invented labels
(a recording's class and a stable hash of its ``src_file``) and five folds (the hash again,
so a recording's copies share label and fold). Such labels split a class by recording, so
that run prints no accuracy: its scores measure nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.peak_memory import PeakMemory  # noqa: E402
from soundclf import models  # noqa: E402
from soundclf.params import read_yaml  # noqa: E402


def stages_of(project: Path, params: dict, dataset: str) -> list[str]:
    """The stages of dvc.yaml that run for ``dataset``, in the file's (the DAG's) order:
    ``<stage>@<dataset>`` for a ``foreach`` over a list of datasets holding it
    (``datasets``, ``cnn.datasets``), ``<stage>@<item>`` for each item of another
    ``foreach`` (``weights``, over the encoders), ``<stage>@<dataset>-<item>`` for each
    item of a ``matrix`` of the datasets and another list (the encoders, the ensemble's
    members), the plain name otherwise."""
    def value(reference: str) -> list:
        node = params
        for part in reference.strip("${}").split("."):
            node = node[part]
        return node

    def of_datasets(reference: str) -> bool:
        return reference.strip("${}").split(".")[-1] == "datasets"

    found = []
    for name, stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].items():
        if "matrix" in stage:
            axes = stage["matrix"]
            if dataset in value(axes["dataset"]):
                found += [f"{name}@{dataset}-{item}" for key, reference in axes.items()
                          if key != "dataset" for item in value(reference)]
        elif "foreach" not in stage:
            found.append(name)
        elif not of_datasets(stage["foreach"]):
            found += [f"{name}@{item}" for item in value(stage["foreach"])]
        elif dataset in value(stage["foreach"]):
            found.append(f"{name}@{dataset}")
    return found


def esc50_folder(path: Path) -> Path:
    """The ``ESC-50-master`` folder at or inside ``path``."""
    for candidate in (path, path / "ESC-50-master"):
        if (candidate / "meta" / "esc50.csv").is_file():
            return candidate
    raise SystemExit(f"{path}: no meta/esc50.csv here or in ESC-50-master/")


def stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def build_dataset(source: Path, out: Path, clips: int, labels: int, seed: int = 0) -> Path:
    """An ESC-50-layout folder of ``clips`` gain-varied copies of ``source``'s recordings."""
    meta = pd.read_csv(source / "meta" / "esc50.csv")
    classes = sorted(meta["category"].unique())
    per_class = max(1, labels // len(classes))
    rng = np.random.default_rng(seed)
    (out / "audio").mkdir(parents=True)
    (out / "meta").mkdir()
    rows = []
    for k in range(clips):
        row = meta.iloc[k % len(meta)]
        h = stable_hash(str(row["src_file"]))
        y, sr = sf.read(source / "audio" / row["filename"], dtype="float32")
        gain = 10 ** (rng.uniform(-3, 3) / 20)
        name = f"{k:05d}-{row['filename']}"
        sf.write(out / "audio" / name, np.clip(y * gain, -1, 1), sr, subtype="PCM_16")
        rows.append({"filename": name, "fold": h % 5 + 1,
                     "target": classes.index(row["category"]) * per_class + h // 5 % per_class,
                     "category": f"{row['category']}-{h // 5 % per_class}", "esc10": True,
                     "src_file": str(row["src_file"]), "take": "A"})
    pd.DataFrame(rows).to_csv(out / "meta" / "esc50.csv", index=False)
    return out


def copy_project(dest: Path) -> None:
    """What git would commit (tracked and untracked-but-not-ignored files), without
    pipeline outputs: the project as a fresh clone would have it."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.startswith(("data/", "metrics/", "plots/")) or name == "dvc.lock":
            continue
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def set_value(params: dict, key: str, text: str) -> None:
    """``key=text`` as ``dvc exp run -S`` sets it (``+key`` adds a new key)."""
    node = params
    *parents, last = key.removeprefix("+").split(".")
    for part in parents:
        node = node[part]
    node[last] = read_yaml(text)


def bench_project(project: Path, data: Path, dataset: str, settings: list[str],
                  folder: bool = False) -> dict:
    """A fresh copy of the project in ``project`` (emptied first), pointed at ``data`` for
    ``dataset`` alone (the CNN's too, where it runs by default), ``settings``
    (``KEY=VALUE``) set as ``dvc exp run -S`` sets them,
    committed to a git repository of its own; returns its params."""
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    copy_project(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["datasets"] = [dataset]
    if params["cnn"]["datasets"]:  # the CNN on by default: on for this dataset
        params["cnn"]["datasets"] = [dataset]
    if folder:
        params["data"][dataset] = {"kind": "folder", "path": str(data)}
    else:
        params["data"][dataset]["url"] = str(data)
    for item in settings:
        key, _, value = item.partition("=")
        set_value(params, key, value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                 "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=project, check=True, capture_output=True)
    return params


def run(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int, int]:
    """Run ``cmd``, its output appended to ``log``; its wall seconds and the peak resident
    and proportional memory of its process tree (scripts.peak_memory), in bytes."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        with PeakMemory(process.pid, proportional=True) as memory:
            returncode = process.wait()
    seconds = time.perf_counter() - start
    if returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {returncode}); see {log}")
    return seconds, memory.peak, memory.peak_pss


def inputs_size(project: Path, stage: str) -> int:
    """Bytes of the stage's dependencies under data/ (its data, not its code), from
    dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"].get(stage, {})
    return sum(dep.get("size", 0) for dep in lock.get("deps", [])
               if dep["path"].startswith("data/"))


def model_table(metrics: Path) -> str:
    """Each trained model's accuracy and balanced accuracy (mean ± std over the rounds) and
    each round's accuracy, in percent, as a Markdown table (from the details files, which
    hold the rounds)."""
    lines = ["| model | accuracy | balanced accuracy | accuracy per round |", "|---|---|---|---|"]
    for model in models.every():
        path = metrics / "details" / f"{model}.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        cells = [f"{100 * m[k]:.1f}" + (f" ± {100 * m['std'][k]:.1f}" if "std" in m else "")
                 for k in ("accuracy", "balanced_accuracy")]
        per_round = ", ".join(f"{name} {100 * r['accuracy']:.1f}"
                              for name, r in m.get("rounds", {}).items()) or "-"
        lines.append(f"| {model} | {' | '.join(cells)} | {per_round} |")
    return "\n".join(lines)


NAIVE = """
import sys
sys.path.insert(0, {repo!r})
from scripts.bench_features import naive_features
paths = sys.argv[1:]
for p in paths:
    naive_features(p)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", type=Path)
    parser.add_argument("--clips", type=int, default=0,
                        help="cycle the recordings to N clips with invented labels: a cost "
                             "measurement only (default 0: the recordings as they are)")
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--dataset", default=None,
                        help="esc50 (default) or esc10; with --folder, the dataset's name "
                             "(default mysounds)")
    parser.add_argument("--folder", action="store_true",
                        help="RECORDINGS is a dataset of the folder kind, read in place")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value, as dvc exp run -S (repeatable)")
    parser.add_argument("--naive", action="store_true",
                        help="also time the original one-clip loop over the same clips")
    parser.add_argument("--skip", action="append", default=[], metavar="STAGE",
                        help="a stage not to run, e.g. train-ensemble (repeatable)")
    parser.add_argument("--workdir", type=Path, help="kept after the run (default: a temp dir)")
    args = parser.parse_args()

    args.dataset = args.dataset or ("mysounds" if args.folder else "esc50")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.folder:
        data = args.recordings.resolve()
        n_files = sum(1 for p in data.rglob("*") if p.is_file())
        print(f"dataset: a folder of {n_files} files -> {data}")
    elif args.clips:
        source = esc50_folder(args.recordings.resolve())
        data = work / "dataset" / "ESC-50-master"
        if data.exists():
            shutil.rmtree(data)
        build_dataset(source, data, args.clips, args.labels)
    else:
        data = esc50_folder(args.recordings.resolve())
    if not args.folder:
        meta = pd.read_csv(data / "meta" / "esc50.csv")
        print(f"dataset: {len(meta)} clips, {meta['category'].nunique()} labels, folds "
              f"{sorted(int(f) for f in meta['fold'].unique())} -> {data}")

    project = work / "project"
    params = bench_project(project, data, args.dataset, args.set, args.folder)
    log = work / "bench.log"
    log.write_text("")

    times, peaks, shares, sizes = {}, {}, {}, {}  # a stage's runs: one per ensemble member
    for name in stages_of(project, params, args.dataset):
        stage = name.split("@")[0]
        if stage in args.skip:
            continue
        seconds, peak, pss = run(["dvc", "repro", "-s", name], project, log)
        size = inputs_size(project, name)
        times[stage] = times.get(stage, 0.0) + seconds
        peaks[stage] = max(peaks.get(stage, 0), peak)
        shares[stage] = max(shares.get(stage, 0), pss)
        sizes[stage] = max(sizes.get(stage, 0), size)
        print(f"  {name:<36} {seconds:7.1f} s  peak {peak / 2**30:5.2f} GB "
              f"(PSS {pss / 2**30:5.2f})  inputs {size / 2**20:7.1f} MB", flush=True)
    after = sum(t for s, t in times.items() if s not in ("index", "download"))
    settings = " ".join(f"-S {s}" for s in args.set) or "(default params)"
    clips = json.loads((project / "data/results" / args.dataset / "dataset.json").read_text())
    print(f"\n{clips['clips_used']} clips, {args.dataset}, {settings}, {os.cpu_count()} cores\n")
    print("| stage | seconds | peak memory (GB) | peak PSS (GB) | its data inputs (MB) |\n"
          "|---|---|---|---|---|")
    for stage, seconds in times.items():
        print(f"| {stage} | {seconds:.1f} | {peaks[stage] / 2**30:.2f} | "
              f"{shares[stage] / 2**30:.2f} | {sizes[stage] / 2**20:.1f} |")
    print(f"| **all after download** | **{after:.1f}** | {max(peaks.values()) / 2**30:.2f} | "
          f"{max(shares.values()) / 2**30:.2f} | |")
    print(f"| all | {sum(times.values()):.1f} | | | |\n")
    print("(peak memory: resident memory of the `dvc repro -s` process and all its children "
          "together, sampled every 0.2 s, pages shared between processes counted in each; "
          "peak PSS: their proportional set size, each shared page split between its "
          "processes, what the stage takes from the machine; a stage run per member: the "
          "largest)")
    if args.clips:
        print("(cycled recordings with invented labels: a cost measurement, no accuracy)")
    else:
        print(model_table(project / "metrics" / args.dataset))
    if args.naive:
        paths = sorted(str(p) for p in (data / "audio").iterdir())
        script = work / "naive.py"
        script.write_text(NAIVE.format(repo=str(REPO)))
        naive, _ = run([sys.executable, str(script), *paths], work, log)
        stage = times["feature-extraction"]
        print(f"\nfeatures, {len(paths)} clips, whole process: stage {stage:.1f} s (dvc repro -s),"
              f" naive loop {naive:.1f} s: {naive / stage:.2f}x the naive loop")
    print(f"\nlog: {log}; project: {project}")


if __name__ == "__main__":
    main()
