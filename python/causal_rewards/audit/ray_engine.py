"""The Ray engine: the two passes of ``engine`` run on Ray workers and the driver merges the
summaries in order. Summaries merge by addition (integer counts and sketches) and keep their order,
so the result equals the local engine's bit for bit.

- A Ray Dataset: ``map_batches`` summarises each batch where it lives. Row numbers in error
  messages count rows within a Ray batch (Ray does not expose a row's position in its source).
- Paths (``engine="ray"``): one task per file, reading it in chunks with the local engine's readers,
  so errors name the file and the row exactly.
"""

from __future__ import annotations

import pickle
import re

import numpy as np

from .engine import FirstPass, SecondPass, Spec, build_chunk, finish, make_plan, scan_chunk
from .sources import DEFAULT_CHUNK_ROWS, Chunk, _file_chunks, expand_paths, is_ray_dataset

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


def _file_first(row: dict, spec: Spec, chunk_rows: int) -> dict:
    summary = FirstPass()
    for chunk in _file_chunks(row["item"], spec.columns, chunk_rows):
        summary.merge(scan_chunk(chunk, spec))
    return {"summary": pickle.dumps(summary)}


def _file_second(row: dict, spec: Spec, plan, chunk_rows: int) -> dict:
    summary = SecondPass()
    for chunk in _file_chunks(row["item"], spec.columns, chunk_rows):
        summary.merge(build_chunk(chunk, spec, plan))
    return {"summary": pickle.dumps(summary)}


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
    batch = int(chunk_size or DEFAULT_CHUNK_ROWS)
    if is_ray_dataset(source):
        origins = ["ray dataset"]
        missing = [c for c in spec.columns if c not in source.columns()]
        if missing:
            raise ValueError(f"ray dataset: column {missing[0]!r} not found (columns: {source.columns()})")
        options = {"batch_format": "numpy", "batch_size": batch, "zero_copy_batch": True}

        def first_pass():
            return source.map_batches(_first, fn_kwargs={"spec": spec}, **options)

        def second_pass(plan):
            return source.map_batches(_second, fn_kwargs={"spec": spec, "plan": plan}, **options)
    else:
        origins = expand_paths(source)
        files = ray.data.from_items(origins, override_num_blocks=len(origins))

        def first_pass():
            return files.map(_file_first, fn_kwargs={"spec": spec, "chunk_rows": batch})

        def second_pass(plan):
            return files.map(_file_second, fn_kwargs={"spec": spec, "plan": plan, "chunk_rows": batch})

    try:
        first = FirstPass()
        for row in first_pass().iter_rows():  # streamed: one summary at a time
            first.merge(pickle.loads(row["summary"]))
        plan = make_plan(first, spec, origins)
        second = SecondPass()
        for row in second_pass(plan).iter_rows():
            second.merge(pickle.loads(row["summary"]))
    except Exception as error:  # Ray wraps task errors; re-raise the user's
        unwrapped = _unwrap(error)
        if unwrapped is None:
            raise
        raise type(unwrapped)(str(unwrapped)) from None
    return finish(second, spec, plan, first, origins)
