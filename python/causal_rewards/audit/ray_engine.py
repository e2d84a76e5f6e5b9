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

import contextlib
import logging
import pickle

import numpy as np

from .columns import resolve
from .files import Chunk, file_columns
from .finish import finish
from .passes import FirstPass, SecondPass, build_chunk, build_file, scan_chunk, scan_file
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
    if PATH_COLUMN in batch and PATH_COLUMN not in spec.source_columns and len(batch[PATH_COLUMN]):
        origin = str(batch[PATH_COLUMN][0])
    return Chunk({c: np.asarray(batch[c]) for c in spec.source_columns}, origin, 0)


def _batch_first(batch: dict, spec: Spec) -> dict:
    return {"summary": np.array([_outcome(scan_chunk, _chunk(batch, spec), spec)], dtype=object)}


def _batch_second(batch: dict, spec: Spec, plan) -> dict:
    return {"summary": np.array([_outcome(build_chunk, _chunk(batch, spec), spec, plan)], dtype=object)}


def _file_first(row: dict, spec: Spec, chunk_rows: int) -> dict:
    return {"summary": _outcome(scan_file, row["item"], spec, chunk_rows)}


def _file_second(row: dict, spec: Spec, plan, chunk_rows: int) -> dict:
    return {"summary": _outcome(build_file, row["item"], spec, plan, chunk_rows)}


def _import_ray():
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise ValueError('the Ray engine needs Ray: pip install "causal-rewards[ray]"') from None
    if not ray.is_initialized():  # a cluster of our own: only its errors on stderr
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return ray


@contextlib.contextmanager
def _settings(context):
    """Runs the passes with rows in order and Ray Data's progress bars and logs below ERROR off; the
    dataset's context (shared with the caller's dataset) and the logger are restored afterwards."""
    logger = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, context.enable_progress_bars, logger.level)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars, level = saved
        logger.setLevel(level)


def _dataset_passes(source, spec: Spec, batch: int):
    """(first pass, second pass) of a Ray Dataset: each a function returning the mapped dataset."""
    missing = [c for c in spec.source_columns if c not in source.columns()]
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
    batch = DEFAULT_CHUNK_ROWS if chunk_size is None else chunk_size
    if is_ray_dataset(source):
        origins, dataset = ["ray dataset"], source
        spec = resolve(spec, source.columns(), origins[0])
        first_pass, second_pass = _dataset_passes(source, spec, batch)
    else:
        origins = expand_paths(source)
        spec = resolve(spec, file_columns(origins[0]), origins[0])
        dataset = ray.data.from_items(origins, override_num_blocks=len(origins))
        first_pass, second_pass = _file_passes(dataset, spec, batch)
    with _settings(dataset.context):
        first = _merge(first_pass().iter_rows(), FirstPass())
        plan = make_plan(first, spec, origins)
        second = _merge(second_pass(plan).iter_rows(), SecondPass())
    return finish(first, second, spec, plan, origins)
