"""Time a queued sweep against one `dvc repro`, in a fresh copy of the project.

    python scripts/bench_sweep.py RECORDINGS [--sweep 'svc.C=0.1,0.3,0.5,3.0'] [-j 2]
        [--dataset esc50] [-S key=value ...] [--workdir DIR]

RECORDINGS is a folder in the ESC-50 layout (as for scripts/bench_pipeline.py). The
project (what git would commit) is copied into a fresh git repository, pointed at the
recordings (``datasets: [<dataset>]``, ``-S`` values as ``dvc exp run -S`` sets them) and
committed (scripts/bench_pipeline.bench_project); `dvc repro` runs once (not committed, as
after a user's first run), then ``dvc exp run --queue -S <sweep>`` queues one experiment
per value and ``dvc queue start -j N`` runs them. Prints both wall times and their ratio,
which stages each experiment ran (the others were restored from DVC's run-cache) and
every experiment's accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.bench_pipeline import bench_project, esc50_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", type=Path)
    parser.add_argument("--sweep", default="svc.C=0.1,0.3,0.5,3.0",
                        help="the queued -S, one experiment per comma-separated value")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="queue workers")
    parser.add_argument("--dataset", default="esc50", choices=["esc50", "esc10"])
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value of the base, as dvc exp run -S")
    parser.add_argument("--workdir", type=Path, help="kept after the run (default: a temp dir)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    project = work / "project"
    bench_project(project, esc50_folder(args.recordings.resolve()), args.dataset, args.set)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}

    def run(*cmd: str) -> str:
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        with open(work / "bench.log", "a") as log:
            log.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}")
        if result.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {result.returncode}); see "
                             f"{work / 'bench.log'}")
        return result.stdout

    start = time.perf_counter()
    run("dvc", "repro")
    repro = time.perf_counter() - start
    print(f"dvc repro: {repro:.0f} s", flush=True)
    queued = re.findall(r"Queued experiment '([^']+)'",
                        run("dvc", "exp", "run", "--queue", "-S", args.sweep))
    start = time.perf_counter()
    run("dvc", "queue", "start", "-j", str(args.jobs))
    while re.search(r"\b(Queued|Running)\b", status := run("dvc", "queue", "status")):
        time.sleep(2)
    sweep = time.perf_counter() - start
    failed = [n for n in queued if not re.search(rf"{n}\s+\S+\s+\S+\s+Success", status)]
    if failed:
        raise SystemExit(f"experiments {', '.join(failed)} failed:\n{status}")
    print(f"queued sweep of {len(queued)} ({args.sweep}), -j {args.jobs}: {sweep:.0f} s, "
          f"{sweep / repro:.2f}x one dvc repro\n")
    for name in queued:
        log = run("dvc", "queue", "logs", name)
        ran = re.findall(r"Running stage '([^']+)'", log)
        restored = re.findall(r"Stage '([^']+)' is cached - skipping run", log)
        print(f"{name}: ran {len(ran)} ({', '.join(ran)}); restored {len(restored)}")
    key = args.sweep.partition("=")[0]
    print(f"\n| experiment | {key} | " + " | ".join(models := ["svc", "ensemble"])
          + " |\n|---|---|---|---|")
    for commit in json.loads(run("dvc", "exp", "show", "--json")):
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0]["data"]
            value = data["params"]["params.yaml"]["data"]
            for part in key.split("."):
                value = value[part]
            scores = [data["metrics"].get(f"metrics/{args.dataset}/{m}.json", {})
                      .get("data", {}).get("accuracy") for m in models]
            print(f"| {exp['name']} | {value} | "
                  + " | ".join("-" if s is None else f"{100 * s:.2f}" for s in scores) + " |")
    print(f"\nlog: {work / 'bench.log'}; project: {project}")


if __name__ == "__main__":
    main()
