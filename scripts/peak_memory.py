"""Peak resident memory of a process tree, sampled while it runs (benchmark scripts).

``PeakMemory(pid)`` samples the resident set size of process ``pid`` and all its
descendants together (joblib's and DataLoader's workers included) every ``interval``
seconds, in a thread, until it is stopped; ``peak`` is the largest sum seen, in bytes.
Pages shared by several processes (the libraries they all load: torch alone is about
0.45 GB resident in each) count once per process: the figure is an upper bound of what the
tree takes from the machine. With ``proportional=True`` it also samples the tree's
proportional set size (each shared page split between the processes sharing it: what the
tree takes), ``peak_pss``; reading it costs more (each process's ``smaps``).
"""

from __future__ import annotations

import threading

import psutil


def tree_rss(pid: int | None = None, proportional: bool = False) -> int:
    """Resident memory of process ``pid`` (default: this one) and all its descendants, in
    bytes (``proportional``: their proportional set size); a process that ends while being
    read counts 0."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss if proportional \
                else process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakMemory:
    """A context manager sampling :func:`tree_rss` of ``pid`` until it exits."""

    def __init__(self, pid: int | None = None, interval: float = 0.2,
                 proportional: bool = False):
        self.pid, self.interval, self.proportional = pid, interval, proportional
        self.peak = self.peak_pss = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self._read()
            if self._done.wait(self.interval):
                return

    def _read(self) -> None:
        self.peak = max(self.peak, tree_rss(self.pid))
        if self.proportional:
            self.peak_pss = max(self.peak_pss, tree_rss(self.pid, proportional=True))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self._read()
