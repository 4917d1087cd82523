"""Stage `feature-extraction`: the 2,474 audio features of every clip, in metadata order.

    python -m stages.feature_extraction DATASET RAW_DIR OUT_PARQUET METRICS_JSON SKIPPED_CSV
                                        --cache CACHE_DIR

Writes one row per clip: the adapter's metadata columns (``filename``, ``label`` and the
split columns) followed by the feature columns of :func:`stages.audio.feature_names`.

Clips are computed in batches of ``features.batch_size`` (one CQT set-up per batch) by
``features.n_jobs`` parallel workers, on this machine (``features.backend: local``) or on a
Dask cluster (``dask``, at ``features.scheduler``). Each clip's features are kept in
CACHE_DIR under the hash of its audio and of the feature params, so a rerun computes only
clips it has not seen (new clips, or all of them after a feature param changed), and an
interrupted run resumes. The table is written in chunks from the cache, so memory stays
bounded by the batch, not the dataset.

A clip that cannot be used (unreadable, empty, truncated, non-finite features) stops the
stage with every bad file listed (``features.on_error: fail``), or is left out and recorded
in SKIPPED_CSV (``skip``). METRICS_JSON counts the clips kept and skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import joblib
import librosa
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from tqdm import tqdm

from stages.archive import sha256sum
from stages.audio import FeatureParams, batch_features, clip_features, feature_names, load_clip
from stages.datasets import LayoutError, adapter_for
from stages.io import write_json, write_with
from stages.params import ParamError, load_params

WRITE_CHUNK = 512  # clips per parquet row group


class ExtractionError(RuntimeError):
    """One or more clips whose features could not be computed."""


def _batch(paths: list[str], fp: FeatureParams) -> list[np.ndarray | str]:
    """Features of each clip, or the reason it failed; runs in a worker."""
    results: list[np.ndarray | str] = []
    clips = {}
    for i, path in enumerate(paths):
        try:
            clips[i] = load_clip(path, fp)
        except Exception as exc:  # reported with the file name by the caller
            results.append(f"{type(exc).__name__}: {exc}")
        else:
            results.append("")
    if clips:
        try:
            rows = batch_features(np.stack(list(clips.values())), fp).astype(np.float32)
        except Exception:  # find the clip at fault by computing one at a time
            rows = [_one(y, fp) for y in clips.values()]
        for i, row in zip(clips, rows, strict=True):
            finite = isinstance(row, str) or np.isfinite(row).all()
            results[i] = row if finite else "non-finite feature values"
    return results


def _one(y: np.ndarray, fp: FeatureParams) -> np.ndarray | str:
    try:
        return clip_features(y, fp).astype(np.float32)
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


def compute(paths: list[Path], fp: FeatureParams, n_jobs: int = 1, batch_size: int = 32,
            backend_name: str = "local", scheduler: str | None = None,
            ) -> Iterator[tuple[int, np.ndarray | str]]:
    """``(index, features or error)`` for every path, in order, with a progress bar."""
    starts = range(0, len(paths), batch_size)
    with backend(backend_name, scheduler, n_jobs), tqdm(
        total=len(paths), desc="features", unit="clip"
    ) as bar:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_batch)([str(Path(p).absolute()) for p in paths[s:s + batch_size]], fp)
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


def extract_features(paths: list[Path], fp: FeatureParams, n_jobs: int = 1,
                     on_error: str = "fail", **options) -> tuple[np.ndarray, dict[int, str]]:
    """A (clips, features) float32 matrix in the order of ``paths``, and the failures.

    Failures map the index in ``paths`` to the reason. With ``on_error="fail"`` any
    failure raises, listing them all; with ``"skip"`` their rows are NaN. ``options``
    go to :func:`compute`.
    """
    values = np.full((len(paths), len(feature_names(fp))), np.nan, dtype=np.float32)
    errors = {}
    for i, result in compute(paths, fp, n_jobs, **options):
        if isinstance(result, str):
            errors[i] = result
        else:
            values[i] = result
    check_errors(paths, errors, on_error)
    return values, errors


def check_errors(paths: list[Path], errors: dict[int, str], on_error: str) -> None:
    if errors and (on_error == "fail" or len(errors) == len(paths)):
        listing = "\n  ".join(f"{paths[i]}: {why}" for i, why in sorted(errors.items()))
        hint = " (set features.on_error: skip to leave them out)" if on_error == "fail" else ""
        raise ExtractionError(f"{len(errors)} of {len(paths)} clips failed{hint}:\n  {listing}")


class FeatureCache:
    """Feature vectors on disk, one ``.npy`` per clip, keyed by audio content and params.

    The key hashes the file's bytes, the params that define the values and the librosa
    version, so a changed clip, a new clip or a changed feature param is a cache miss.
    """

    def __init__(self, folder: Path, fp: FeatureParams):
        self.folder = folder
        recipe = json.dumps({**asdict(fp), "librosa": librosa.__version__}, sort_keys=True)
        self.recipe = hashlib.sha256(recipe.encode()).hexdigest()[:16]

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


def cached_features(paths: list[Path], fp: FeatureParams, cache: FeatureCache,
                    settings: dict) -> tuple[list[str], dict[int, str]]:
    """Fill the cache for every clip; returns each clip's key, and the failures."""
    keys = [cache.key(p) for p in tqdm(paths, desc="hash", unit="clip")]
    todo = [i for i, key in enumerate(keys) if not cache.path(key).is_file()]
    print(f"{len(paths) - len(todo)} of {len(paths)} clips in the feature cache; "
          f"computing {len(todo)}")
    errors = {}
    results = compute([paths[i] for i in todo], fp, settings["n_jobs"],
                      settings["batch_size"], settings["backend"], settings["scheduler"])
    for j, result in results:
        if isinstance(result, str):
            errors[todo[j]] = result
        else:
            cache.put(keys[todo[j]], result)
    check_errors(paths, errors, settings["on_error"])
    return keys, errors


def write_table(dest: Path, meta: pd.DataFrame, keys: list[str], cache: FeatureCache,
                names: list[str]) -> None:
    """Write metadata and cached features as parquet, ``WRITE_CHUNK`` rows at a time."""
    def write(tmp: Path) -> None:
        writer = None
        for start in range(0, len(meta), WRITE_CHUNK):
            rows = meta.iloc[start:start + WRITE_CHUNK].reset_index(drop=True)
            values = np.stack([cache.get(k) for k in keys[start:start + WRITE_CHUNK]])
            chunk = pa.Table.from_pandas(
                pd.concat([rows, pd.DataFrame(values, columns=names)], axis=1),
                preserve_index=False,
            )
            writer = writer or pq.ParquetWriter(tmp, chunk.schema)
            writer.write_table(chunk)
        if writer:
            writer.close()

    write_with(dest, write)


def run(dataset: str, raw_dir: Path, params: dict, out: Path, metrics: Path,
        skipped_csv: Path, cache_dir: Path) -> pd.DataFrame:
    """The whole stage; returns the table of skipped clips (``filename``, ``error``)."""
    settings = params["features"]
    fp = FeatureParams.from_params(settings)
    adapter = adapter_for(dataset)
    meta = adapter.metadata(raw_dir)
    paths = [adapter.audio_path(raw_dir, f) for f in meta["filename"]]
    cache = FeatureCache(cache_dir, fp)
    keys, errors = cached_features(paths, fp, cache, settings)
    keep = [i for i in range(len(meta)) if i not in errors]
    write_table(out, meta.iloc[keep], [keys[i] for i in keep], cache, feature_names(fp))
    skipped = pd.DataFrame({"filename": meta["filename"].iloc[sorted(errors)].to_numpy(),
                            "error": [errors[i] for i in sorted(errors)]})
    write_with(skipped_csv, lambda tmp: skipped.to_csv(tmp, index=False))
    write_json(metrics, {"clips": len(keep), "skipped": len(skipped)})
    return skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path, help="clip counts (JSON)")
    parser.add_argument("skipped", type=Path, help="clips left out, with reasons (CSV)")
    parser.add_argument("--cache", type=Path, required=True, help="per-clip feature cache")
    args = parser.parse_args(argv)
    try:
        skipped = run(args.dataset, args.raw_dir, load_params(), args.out, args.metrics,
                      args.skipped, args.cache)
    except (ExtractionError, LayoutError, ParamError) as exc:
        sys.exit(f"feature-extraction {args.dataset}: {exc}")
    for row in skipped.itertuples():
        print(f"skipped {row.filename}: {row.error}")
    print(f"feature-extraction {args.dataset}: {len(skipped)} skipped -> {args.out}")


if __name__ == "__main__":
    main()
