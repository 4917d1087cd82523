"""Memory: a fit returns what it took when it ends, in a process and in a joblib worker,
parallel fits' workers are stopped when done, and a round that would not fit is refused
before any training (soundclf.memory)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import psutil
import pytest
from fastai.tabular.all import Callback
from joblib import Parallel, delayed

from soundclf import memory
from soundclf.evaluation import train, tune
from soundclf.evaluation.fit import one_thread
from soundclf.evaluation.rounds import Round
from soundclf.models import get
from soundclf.models.cnn import SpectrogramCNN
from soundclf.params import load_params

MB = 2**20
# What a fit may hold above the level before it (its batches, network, optimizer, the
# rows' copies), and grow by from its first epoch to the last of the last fit. Measured
# here with repeated_fits: 202 MB above the level before, growth under 1 MB; without
# soundclf.memory.release, 267 to 551 MB above it, growth 162 and 191 MB (48 bands, two
# runs each).
BOUND = 350 * MB
MARGIN = 24 * MB


class EpochMemory(Callback):
    """Records this process's resident memory after every epoch."""

    order = 200  # after ReturnMemory

    def __init__(self, seen: list[int]):
        self.seen = seen

    def after_epoch(self) -> None:
        self.seen.append(memory.rss())


def repeated_fits(fits: int = 2, epochs: int = 3) -> list[int]:
    """Resident memory before, then after each epoch of ``fits`` fits of the CNN, on one
    thread, on 480 random spectrograms of the pipeline's size (48 bands, 216 frames): its
    batches' activations are tens of MB, the sizes glibc's heap keeps.

    Without soundclf.memory.release, glibc keeps the batches' freed heap resident (BOUND).
    """
    seen: list[int] = []

    class Probed(SpectrogramCNN):
        def callbacks(self):
            return [*super().callbacks(), EpochMemory(seen)]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(480, 48, 216)).astype(np.float32)
    y = np.arange(480) % 50
    seen.append(memory.rss())
    with one_thread():
        for _ in range(fits):
            model = Probed(epochs=epochs, precision="fp32", device="cpu").fit(x, y)
            assert model.predict(x[:4]).shape == (4,)
            del model
    return seen


def assert_bounded(seen: list[int]) -> None:
    before, after = seen[0], seen[1:]
    shown = f"{round(before / MB)} MB before, {[round(a / MB) for a in after]} MB after each epoch"
    assert max(after) - before < BOUND, shown
    assert max(after[1:]) - after[0] < MARGIN, shown


@pytest.mark.slow
def test_repeated_fits_in_one_process_return_their_memory():
    run = subprocess.run(
        [sys.executable, "-c", "import json; from tests.test_memory import repeated_fits; "
                               "print(json.dumps(repeated_fits()))"],
        capture_output=True, text=True, check=True)
    assert_bounded(json.loads(run.stdout.splitlines()[-1]))


@pytest.mark.slow
def test_repeated_fits_in_a_joblib_worker_return_their_memory():
    (after,) = Parallel(n_jobs=2)(delayed(repeated_fits)() for _ in range(1))
    assert_bounded(after)


def test_release_runs_without_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    memory.release()  # nothing to trim with: a no-op, not an error


def test_a_round_that_would_not_fit_is_refused_before_training(monkeypatch):
    params = load_params()
    rng = np.random.default_rng(0)
    n = 40
    table = pd.DataFrame({
        "filename": [f"{i}.wav" for i in range(n)], "label": np.arange(n) % 2,
        "split": ["train"] * 30 + ["valid"] * 10, "fold": [1, 2, 3] * 10 + [5] * 10})
    rnd = Round("fold5", table, [], rng.normal(size=(n, 48, 216)).astype(np.float32))
    monkeypatch.setattr(memory, "available", lambda: 64 * MB)
    fitted = []
    monkeypatch.setattr(train.tune, "search_folds", lambda *a: fitted.append(a))
    with pytest.raises(memory.OutOfMemoryError) as caught:
        train.fit_round(get("cnn"), params, rnd, out_of_fold=True)
    message = str(caught.value)
    assert "training cnn in round fold5" in message
    assert "0.1 GB is available" in message
    assert "lower tune.n_jobs or cnn.training.batch_size" in message
    assert not fitted  # refused before the search or any fit


@pytest.mark.parametrize("oof_folds, epochs, workers", [
    (1, None, 0),       # one out-of-fold fit: here, not in a worker
    (2, None, 2),       # two at once
    (1, [40, 80], 2),   # the search's 2 x 3 fits, two at a time; its first fold is the oof's
    (None, [40], 2),    # one candidate on 3 folds, two at a time: the oof's, none more
    (0, None, 0),       # no out-of-fold fits: the final fit alone
])
def test_the_memory_check_counts_the_fits_that_run_at_once(monkeypatch, oof_folds, epochs,
                                                           workers):
    params = load_params()
    params["oof"]["folds"], params["tune"]["n_jobs"] = oof_folds, 2
    params["tune"]["cnn"]["epochs"] = epochs
    n = 40
    table = pd.DataFrame({
        "filename": [f"{i}.wav" for i in range(n)], "label": np.arange(n) % 2,
        "split": ["train"] * 30 + ["valid"] * 10, "fold": [1, 2, 3] * 10 + [5] * 10})
    rnd = Round("fold5", table, [], np.zeros((n, 48, 216), np.float32))
    checked = []

    def check_fits(need, what, lower):
        checked.append(what)
        raise memory.OutOfMemoryError(what)
    monkeypatch.setattr(memory, "check_fits", check_fits)
    with pytest.raises(memory.OutOfMemoryError):
        train.fit_round(get("cnn"), params, rnd, out_of_fold=True)
    assert f"({workers} fits at once in worker processes" in checked[0]


def test_the_estimate_grows_with_the_data_and_the_batch():
    x = np.zeros((400, 48, 216), np.float32)
    y = np.arange(400) % 10
    small = SpectrogramCNN(batch_size=16).fit_memory(x[:200], y[:200])
    assert SpectrogramCNN(batch_size=16).fit_memory(x, y) > small
    assert SpectrogramCNN(batch_size=64).fit_memory(x[:200], y[:200]) > small
    # at least the rows' own float32 bytes
    assert small > x[:200].nbytes


def loky_workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "popen_loky_posix" in " ".join(p.cmdline())]  # not its resource tracker


def test_the_workers_of_parallel_fits_are_stopped_when_their_fits_are_done():
    """Idle workers would keep what they grew to until joblib's idle timeout (300 s), while
    the round's final fit runs here."""
    params = load_params()
    rng = np.random.default_rng(0)
    n = 40
    table = pd.DataFrame({
        "filename": [f"{i}.wav" for i in range(n)], "label": np.array(["a", "b"])[np.arange(n) % 2],
        "split": ["train"] * 30 + ["valid"] * 10, "fold": [1, 2, 3] * 10 + [5] * 10,
        "f0": rng.normal(size=n), "f1": rng.normal(size=n)})
    rnd = Round("fold5", table, ["f0", "f1"])
    inner = tune.inner_rounds(rnd, params, None)
    tasks = [(params, inner[name]) for name in list(inner)[:2]]
    results = tune.fit_folds(get("svc"), tasks, 2, "inner fits")
    assert [r.round.name for r in results] == [rnd.name for rnd in (t[1] for t in tasks)]
    assert not loky_workers()
