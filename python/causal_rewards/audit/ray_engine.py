"""The Ray engine: the two passes (``passes``) run on Ray workers and the driver merges their results
in order. Results merge by addition (integer counts and sketches) and keep their order, so the
report equals the local engine's bit for bit.

- A Ray Dataset: ``map_batches`` summarises each batch where it lives. Row numbers in error
  messages count rows within a Ray batch (Ray does not expose a row's position in its source).
- Paths (``engine="ray"``): one task per file, reading it in chunks with the local engine's readers,
  so errors name the file and the row exactly.

A task does not raise the user's errors (bad values, missing columns, unreadable files): Ray would
wrap them in its own exception types and keep only their text. It returns them, pickled in place of
its result, and the driver raises the first one in the order of the rows.
"""

from __future__ import annotations

import pickle

import numpy as np

from .files import Chunk, file_chunks
from .finish import finish
from .passes import FirstPass, SecondPass, build_chunk, build_chunks, scan_chunk, scan_chunks
from .plan import make_plan
from .sources import DEFAULT_CHUNK_ROWS, expand_paths, is_ray_dataset
from .spec import Spec

PATH_COLUMN = "path"
#: Errors of the input (values, columns, files) that a task returns instead of raising.
USER_ERRORS = (ValueError, TypeError, OSError)


def _outcome(work, *args) -> bytes:
    """The pickled result of ``work(*args)``, or the pickled user error it raised."""
    try:
        return pickle.dumps(work(*args))
    except USER_ERRORS as error:
        return pickle.dumps(error)


def _merge(rows, into):
    """Merges the tasks' pickled results in order; raises the first user error a task returned."""
    for row in rows:  # streamed: one result at a time
        value = pickle.loads(row["summary"])
        if isinstance(value, BaseException):
            raise value
        into.merge(value)
    return into


def _chunk(batch: dict, spec: Spec) -> Chunk:
    origin = "ray dataset"
    if PATH_COLUMN in batch and PATH_COLUMN not in spec.columns and len(batch[PATH_COLUMN]):
        origin = str(batch[PATH_COLUMN][0])
    return Chunk({c: np.asarray(batch[c]) for c in spec.columns}, origin, 0)


def _batch_first(batch: dict, spec: Spec) -> dict:
    return {"summary": np.array([_outcome(scan_chunk, _chunk(batch, spec), spec)], dtype=object)}


def _batch_second(batch: dict, spec: Spec, plan) -> dict:
    return {"summary": np.array([_outcome(build_chunk, _chunk(batch, spec), spec, plan)], dtype=object)}


def _file_first(row: dict, spec: Spec, chunk_rows: int) -> dict:
    return {"summary": _outcome(scan_chunks, file_chunks(row["item"], spec.columns, chunk_rows), spec)}


def _file_second(row: dict, spec: Spec, plan, chunk_rows: int) -> dict:
    return {"summary": _outcome(build_chunks, file_chunks(row["item"], spec.columns, chunk_rows), spec, plan)}


def _import_ray():
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise ValueError('the Ray engine needs Ray: pip install "causal-rewards[ray]"') from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return ray


def _dataset_passes(source, spec: Spec, batch: int):
    """(first pass, second pass) of a Ray Dataset: each a function returning the mapped dataset."""
    missing = [c for c in spec.columns if c not in source.columns()]
    if missing:
        raise ValueError(f"ray dataset: column {missing[0]!r} not found (columns: {source.columns()})")
    options = {"batch_format": "numpy", "batch_size": batch, "zero_copy_batch": True}

    def first_pass():
        return source.map_batches(_batch_first, fn_kwargs={"spec": spec}, **options)

    def second_pass(plan):
        return source.map_batches(_batch_second, fn_kwargs={"spec": spec, "plan": plan}, **options)

    return first_pass, second_pass


def _file_passes(files, spec: Spec, batch: int):
    """(first pass, second pass) of files: one task per file."""

    def first_pass():
        return files.map(_file_first, fn_kwargs={"spec": spec, "chunk_rows": batch})

    def second_pass(plan):
        return files.map(_file_second, fn_kwargs={"spec": spec, "plan": plan, "chunk_rows": batch})

    return first_pass, second_pass


def run_ray(source, spec: Spec, chunk_size: int | None):
    """Both passes on Ray; the plan and the core call on the driver."""
    ray = _import_ray()
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    batch = int(chunk_size or DEFAULT_CHUNK_ROWS)
    if is_ray_dataset(source):
        origins = ["ray dataset"]
        first_pass, second_pass = _dataset_passes(source, spec, batch)
    else:
        origins = expand_paths(source)
        files = ray.data.from_items(origins, override_num_blocks=len(origins))
        first_pass, second_pass = _file_passes(files, spec, batch)
    first = _merge(first_pass().iter_rows(), FirstPass())
    plan = make_plan(first, spec, origins)
    second = _merge(second_pass(plan).iter_rows(), SecondPass())
    return finish(first, second, spec, plan, origins)
