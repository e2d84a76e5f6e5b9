"""The Ray engine: the two passes of ``engine`` run as ``map_batches`` on Ray workers (each block
summarised where it lives), and the driver merges the summaries in block order. Summaries merge by
addition (integer counts and sketches), and blocks keep their order, so the result equals the
local engine's bit for bit.

Row numbers in error messages count rows within a Ray batch, since Ray does not expose a row's
position in its file; the file itself is named when the source was a list of paths.
"""

from __future__ import annotations

import pickle

import numpy as np

from .engine import FirstPass, SecondPass, Spec, build_chunk, finish, make_plan, scan_chunk
from .sources import DEFAULT_CHUNK_ROWS, Chunk, _kind, expand_paths, is_ray_dataset

PATH_COLUMN = "path"


def _chunk(batch: dict, spec: Spec) -> Chunk:
    origin = "ray dataset"
    if PATH_COLUMN in batch and PATH_COLUMN not in spec.columns and len(batch[PATH_COLUMN]):
        origin = str(batch[PATH_COLUMN][0])
    return Chunk({c: np.asarray(batch[c]) for c in spec.columns}, origin, 0)


def _first(batch: dict, spec: Spec) -> dict:
    return {"summary": np.array([pickle.dumps(scan_chunk(_chunk(batch, spec), spec))], dtype=object)}


def _second(batch: dict, spec: Spec, plan) -> dict:
    return {"summary": np.array([pickle.dumps(build_chunk(_chunk(batch, spec), spec, plan))], dtype=object)}


def _read(paths):
    import ray.data

    files = expand_paths(paths)
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise ValueError(f"the Ray engine reads one file type at a time, got {sorted(kinds)}")
    kind = kinds.pop()
    reader = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "jsonl": ray.data.read_json}[kind]
    return reader(files, include_paths=True), files


def _unwrap(error: Exception) -> Exception:
    """The user error a Ray task raised (Ray wraps it), so that the CLI can report it on one line."""
    cause = error
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError, PermissionError)):
            return cause
    return error


def run_ray(source, spec: Spec, chunk_size: int | None):
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise ValueError('the Ray engine needs Ray: pip install "causal-rewards[ray]"') from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    if is_ray_dataset(source):
        dataset, origins = source, ["ray dataset"]
        missing = [c for c in spec.columns if c not in dataset.columns()]
        if missing:
            raise ValueError(f"ray dataset: column {missing[0]!r} not found (columns: {dataset.columns()})")
    else:
        dataset, origins = _read(source)
        missing = [c for c in spec.columns if c not in dataset.columns()]
        if missing:
            raise ValueError(f"{origins[0]}: column {missing[0]!r} not found (columns: {dataset.columns()})")
    batch = int(chunk_size or DEFAULT_CHUNK_ROWS)
    options = {"batch_format": "numpy", "batch_size": batch, "zero_copy_batch": True}
    try:
        first = FirstPass()
        for row in dataset.map_batches(_first, fn_kwargs={"spec": spec}, **options).take_all():
            first.merge(pickle.loads(row["summary"]))
        plan = make_plan(first, spec, origins)
        second = SecondPass()
        for row in dataset.map_batches(_second, fn_kwargs={"spec": spec, "plan": plan}, **options).take_all():
            second.merge(pickle.loads(row["summary"]))
    except Exception as error:  # Ray wraps task errors; re-raise the user's
        unwrapped = _unwrap(error)
        if unwrapped is error:
            raise
        raise type(unwrapped)(str(unwrapped)) from None
    return finish(second, spec, plan, first, origins)
