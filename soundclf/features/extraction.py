"""Computing something of every clip in parallel batches, with a per-clip cache.

A recipe (soundclf.data.audio.Recipe: the summary features, a log-mel spectrogram, a
clip's windows for a pretrained encoder) says how a clip is loaded (``sr``, ``duration``)
and computed (``compute``). Clips are computed in batches of ``features.batch_size`` by
``features.n_jobs`` parallel workers, on this machine (``features.backend: local``) or on
a Dask cluster (``dask``, at ``features.scheduler``). Each clip's values are kept in a
cache folder under the hash of its audio and of the recipe, so a rerun computes only clips
it has not seen, and an interrupted run resumes. A clip that cannot be used stops the
stage with every bad file listed (``features.on_error: fail``), or is left out (``skip``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import librosa
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from soundclf.data.archive import sha256sum
from soundclf.data.audio import Recipe, load_clip
from soundclf.data.datasets import adapter_for
from soundclf.io import write_with


class ExtractionError(RuntimeError):
    """One or more clips whose features could not be computed."""


def _batch(paths: list[str], recipe: Recipe) -> list[np.ndarray | str]:
    """Features (or spectrogram, for LogMelSpectrogram) of each clip, or the reason it failed;
    runs in a worker."""
    results: list[np.ndarray | str] = []
    clips = {}
    for i, path in enumerate(paths):
        try:
            clips[i] = load_clip(path, recipe)
        except Exception as exc:  # reported with the file name by the caller
            results.append(f"{type(exc).__name__}: {exc}")
        else:
            results.append("")
    if clips:
        try:
            rows = recipe.compute(list(clips.values()))
        except Exception:  # find the clip at fault by computing one at a time
            rows = [_one(y, recipe) for y in clips.values()]
        for i, row in zip(clips, rows, strict=True):
            finite = isinstance(row, str) or np.isfinite(row).all()
            results[i] = row if finite else "non-finite feature values"
    return results


def _one(y: np.ndarray, recipe: Recipe) -> np.ndarray | str:
    try:
        return recipe.compute([y])[0]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@contextmanager
def backend(name: str, scheduler: str | None, n_jobs: int) -> Iterator[None]:
    """Run joblib's Parallel locally (loky processes) or on a Dask cluster.

    ``dask`` with no scheduler address starts a local Dask cluster of ``n_jobs`` workers.
    """
    if name == "local":
        yield
        return
    from dask.distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
    else:
        workers = joblib.cpu_count() if n_jobs < 0 else n_jobs
        client = Client(LocalCluster(n_workers=workers, threads_per_worker=1,
                                     dashboard_address=None))
    with client, joblib.parallel_config(backend="dask"):
        yield


def compute(paths: list[Path], recipe: Recipe, n_jobs: int = 1, batch_size: int = 32,
            backend_name: str = "local", scheduler: str | None = None,
            ) -> Iterator[tuple[int, np.ndarray | str]]:
    """``(index, features or error)`` for every path, in order, with a progress bar."""
    starts = range(0, len(paths), batch_size)
    with backend(backend_name, scheduler, n_jobs), tqdm(
        total=len(paths), desc="features", unit="clip"
    ) as bar:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_batch)([str(Path(p).absolute()) for p in paths[s:s + batch_size]], recipe)
            for s in starts
        )
        for start in starts:
            try:
                batch = next(results)
            except Exception as exc:  # a worker died: name the clips it was computing
                shown = ", ".join(str(p) for p in paths[start:start + 3])
                raise ExtractionError(
                    f"a worker failed ({type(exc).__name__}: {exc}) while computing the "
                    f"batch of clips starting with {shown}"
                ) from exc
            yield from enumerate(batch, start)
            bar.update(len(batch))


def check_errors(paths: list[Path], errors: dict[int, str], on_error: str) -> None:
    if errors and (on_error == "fail" or len(errors) == len(paths)):
        listing = "\n  ".join(f"{paths[i]}: {why}" for i, why in sorted(errors.items()))
        hint = " (set features.on_error: skip to leave them out)" if on_error == "fail" else ""
        raise ExtractionError(f"{len(errors)} of {len(paths)} clips failed{hint}:\n  {listing}")


class ClipCache:
    """Feature vectors on disk, one ``.npy`` per clip, keyed by audio content and params.

    The key hashes the file's bytes, the params that define the values and the librosa
    version, so a changed clip, a new clip or a changed feature param is a cache miss.
    """

    def __init__(self, folder: Path, recipe: Recipe):
        self.folder = folder
        text = json.dumps({**asdict(recipe), "librosa": librosa.__version__}, sort_keys=True)
        self.recipe = hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self, path: Path) -> str:
        return f"{sha256sum(path)[:32]}-{self.recipe}"

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray:
        return np.load(self.path(key))

    def put(self, key: str, values: np.ndarray) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
                np.save(f, values)

        write_with(dest, save)


Results = Iterator[tuple[int, np.ndarray | str]]


def cached_values(paths: list[Path], recipe: Recipe, cache: ClipCache, settings: dict,
                    then: Callable[[Results], Results] | None = None,
                    ) -> tuple[list[str], dict[int, str]]:
    """Fill the cache for every clip; returns each clip's key, and the failures.

    ``then`` turns the workers' results into what is cached, in this process (the
    embeddings stage runs its network on the windows the workers cut)."""
    keys = [cache.key(p) for p in tqdm(paths, desc="hash", unit="clip")]
    todo = [i for i, key in enumerate(keys) if not cache.path(key).is_file()]
    print(f"{len(paths) - len(todo)} of {len(paths)} clips in the feature cache; "
          f"computing {len(todo)}")
    errors = {}
    results = compute([paths[i] for i in todo], recipe, settings["n_jobs"],
                      settings["batch_size"], settings["backend"], settings["scheduler"])
    for j, result in results if then is None else then(results):
        if isinstance(result, str):
            errors[todo[j]] = result
        else:
            cache.put(keys[todo[j]], result)
    check_errors(paths, errors, settings["on_error"])
    return keys, errors


@dataclass
class Computed:
    """What :func:`compute_dataset` made of a dataset's clips."""

    meta: pd.DataFrame  # every clip the metadata lists, in its order
    keys: list[str]  # each clip's cache key
    errors: dict[int, str]  # the clips left out (``on_error: skip``), by row
    cache: ClipCache

    @property
    def kept(self) -> list[int]:
        return [i for i in range(len(self.meta)) if i not in self.errors]

    def values(self) -> list[np.ndarray]:
        """The values of every kept clip, in metadata order."""
        return [self.cache.get(self.keys[i]) for i in self.kept]

    def filenames(self) -> np.ndarray:
        return self.meta["filename"].iloc[self.kept].to_numpy().astype(str)

    def skipped(self) -> list[str]:
        return [str(self.meta["filename"].iloc[i]) for i in sorted(self.errors)]


def compute_dataset(dataset: str, raw_dir: Path, recipe: Recipe, cache_dir: Path,
                    settings: dict, then: Callable[[Results], Results] | None = None,
                    params: dict | None = None) -> Computed:
    """``recipe`` of every clip of a downloaded dataset, through the per-clip cache
    (``params``: where a dataset of the folder kind is declared)."""
    adapter = adapter_for(dataset, params)
    meta = adapter.metadata(raw_dir)
    paths = [adapter.audio_path(raw_dir, f) for f in meta["filename"]]
    cache = ClipCache(cache_dir, recipe)
    keys, errors = cached_values(paths, recipe, cache, settings, then)
    return Computed(meta, keys, errors, cache)
