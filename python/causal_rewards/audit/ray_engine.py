"""The Ray engine: the two passes of ``engine`` run as ``map_batches`` on Ray workers (each block
summarised where it lives), and the driver merges the summaries in block order. Summaries merge by
addition (integer counts and sketches), and blocks keep their order, so the result equals the
local engine's bit for bit.

Row numbers in error messages count rows within a Ray batch, since Ray does not expose a row's
position in its file; the file itself is named when the source was a list of paths.
"""

from __future__ import annotations

import pickle
import re

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


USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError)


def _unwrap(error: BaseException) -> BaseException | None:
    """The user error a Ray task raised: Ray wraps it (RayTaskError, UserCodeException), sometimes
    only keeping its text, so follow the causes and fall back to the last "Type: message" line."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, USER_ERRORS) and current is not error:
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    names = "|".join(e.__name__ for e in USER_ERRORS)
    found = re.findall(rf"(?:^|\s)({names}): (.+)", str(error))
    if found:
        kind, message = found[-1]
        return {e.__name__: e for e in USER_ERRORS}[kind](message.strip())
    return None


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
        for row in dataset.map_batches(
            _first, fn_kwargs={"spec": spec}, **options
        ).iter_rows():  # streamed: one summary at a time
            first.merge(pickle.loads(row["summary"]))
        plan = make_plan(first, spec, origins)
        second = SecondPass()
        for row in dataset.map_batches(
            _second, fn_kwargs={"spec": spec, "plan": plan}, **options
        ).iter_rows():  # streamed: one summary at a time
            second.merge(pickle.loads(row["summary"]))
    except Exception as error:  # Ray wraps task errors; re-raise the user's
        unwrapped = _unwrap(error)
        if unwrapped is None:
            raise
        raise type(unwrapped)(str(unwrapped)) from None
    return finish(second, spec, plan, first, origins)
