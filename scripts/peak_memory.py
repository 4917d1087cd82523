"""Peak resident memory of a process tree, sampled while it runs (benchmark scripts).

``PeakMemory(pid)`` samples the resident set size of process ``pid`` and all its
descendants together (joblib's and DataLoader's workers included) every ``interval``
seconds, in a thread, until it is stopped; ``peak`` is the largest sum seen, in bytes.
Pages shared by several processes (the libraries they all load) count once per process:
the figure is an upper bound of what the tree takes from the machine.
"""

from __future__ import annotations

import threading

import psutil


def tree_rss(pid: int | None = None) -> int:
    """Resident memory of process ``pid`` (default: this one) and all its descendants, in
    bytes; a process that ends while being read counts 0."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakMemory:
    """A context manager sampling :func:`tree_rss` of ``pid`` until it exits."""

    def __init__(self, pid: int | None = None, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss(self.pid))
            if self._done.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))
