"""Memory: freed memory handed back to the system, and work that would not fit refused
before it starts.

Why :func:`release` exists. glibc's ``malloc`` serves allocations above its mmap threshold
with their own mappings, returned on ``free``; but after such a block is freed it raises
the threshold to that block's size (up to 32 MB), so from then on the batch-sized
tensors of a network's training (a CNN's activations: tens of MB each) come from the
heap. Freed there, their pages stay resident, and the holes they leave rarely fit the
next sizes: the heap grows epoch after epoch while the memory in use stays the same.
Measured on the CNN (800 clips, 4 epochs, one thread): in-use ``malloc`` memory stayed at
190-230 MB while the process grew by 54 MB an epoch, all of it free heap; fixing the
threshold (``MALLOC_MMAP_THRESHOLD_``) kept it flat but doubled the training time (every
batch's tensors mapped and zeroed anew). ``malloc_trim(0)`` after every epoch and every
fit hands the free pages back (``madvise``) at no measurable cost, so a fit returns its
memory when it ends, in the main process or a joblib worker (docs/results.md, memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

import psutil

from soundclf.params import ParamError

GB = 2**30


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None under another C library (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release(collect: bool = True) -> None:
    """Hand the heap's free pages back to the system (after a collection, with
    ``collect``, so that what unreachable cycles held is free first)."""
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def stop_workers() -> None:
    """Stop joblib's pool of worker processes (loky's reusable executor), so that their
    memory (each holds the libraries, its copy of the data and what its fits grew to) is
    handed back now rather than after their idle timeout, while this process goes on (a
    round's final fit). The next parallel call starts a new pool: a few seconds."""
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


def available() -> int:
    """Bytes the system can give without swapping (``MemAvailable``)."""
    return psutil.virtual_memory().available


def rss() -> int:
    """This process's resident memory, in bytes."""
    return psutil.Process().memory_info().rss


class OutOfMemoryError(ParamError):
    """A stage's work would take more memory than the machine has."""


def check_fits(need: int, what: str, lower: str) -> None:
    """Refuse, before any work, what needs ``need`` more bytes than are available.

    ``what`` says what needs it; ``lower``, the params that lower it.
    """
    have = available()
    if need > have:
        raise OutOfMemoryError(
            f"{what} needs about {need / GB:.1f} GB of memory, and {have / GB:.1f} GB is "
            f"available: lower {lower}, or free memory")
