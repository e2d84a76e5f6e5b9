"""Where audit rows come from: files (parquet, JSONL, CSV; paths, globs, directories, read by
``files``) or in-memory tables (pandas, polars, pyarrow, dict of arrays), as re-iterable chunks of
only the needed columns. In-memory rows have the origin "input"."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .files import (
    CSV,
    JSONL,
    PARQUET,
    Chunk,
    arrow_column,
    file_chunks,
    file_columns,
    file_kind,
    require_columns,
)

DEFAULT_CHUNK_ROWS = 1_000_000


def expand_paths(paths) -> list[str]:
    """Paths, globs and directories to a sorted list of files; an error names what matched nothing."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    for entry in paths:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"a source path must be a string or path, got {type(entry).__name__}")
        entry = os.fspath(entry)
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if name.lower().endswith(PARQUET + JSONL + CSV)
            )
            if not found:
                raise FileNotFoundError(f"{entry}: directory holds no .parquet, .jsonl or .csv file")
            files.extend(found)
        elif glob.has_magic(entry):
            found = sorted(glob.glob(entry))
            if not found:
                raise FileNotFoundError(f"{entry}: no file matches this pattern")
            files.extend(found)
        elif os.path.exists(entry):
            files.append(entry)
        else:
            raise FileNotFoundError(f"{entry}: no such file")
    for path in files:
        file_kind(path)
    return files


def is_path_source(source) -> bool:
    if isinstance(source, (str, os.PathLike)):
        return True
    return (
        isinstance(source, Sequence)
        and not isinstance(source, (str, bytes))
        and len(source) > 0
        and all(isinstance(s, (str, os.PathLike)) for s in source)
    )


def is_ray_dataset(source) -> bool:
    return type(source).__module__.startswith("ray.data") and hasattr(source, "map_batches")


class Source:
    """Re-iterable chunks of ``columns`` from any supported source."""

    def __init__(self, source, columns: Sequence[str], chunk_rows: int | None = None):
        self.columns = list(dict.fromkeys(columns))
        self.chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
        self.files: list[str] = []
        self.table: dict[str, np.ndarray] | None = None
        if is_path_source(source):
            self.files = expand_paths(source)
        elif is_ray_dataset(source):
            raise TypeError("a Ray Dataset is audited by the Ray engine (audit(..., engine='ray'))")
        else:
            self.table = _in_memory_columns(source, self.columns)

    @property
    def origins(self) -> list[str]:
        return self.files if self.files else ["input"]

    def chunks(self) -> Iterator[Chunk]:
        if self.table is not None:
            n = len(next(iter(self.table.values())))
            for start in range(0, max(n, 1), self.chunk_rows):
                yield Chunk(
                    {k: v[start : start + self.chunk_rows] for k, v in self.table.items()}, "input", start
                )
            return
        for path in self.files:
            yield from file_chunks(path, self.columns, self.chunk_rows)


def available_columns(source) -> tuple[list[str], str]:
    """(the column names of a file or in-memory source, where they come from): the first file's for
    paths (every file is checked against what the audit reads when it is read)."""
    if is_path_source(source):
        files = expand_paths(source)
        return file_columns(files[0]), files[0]
    module = type(source).__module__
    if module.startswith("pyarrow") and hasattr(source, "column_names"):
        return [str(c) for c in source.column_names], "input"
    if hasattr(source, "columns") and module.startswith(("pandas", "polars")):
        return [str(c) for c in source.columns], "input"
    if isinstance(source, Mapping):
        return [str(c) for c in source], "input"
    return [], "input"


def _labels_by_name(labels, columns: list[str], origin: str) -> dict:
    """The column label of each name: the label itself or, for labels that are not strings (pandas
    integer column names), the label whose text is the name; an error for a missing or ambiguous name."""
    labels = list(labels)
    require_columns(columns, [str(label) for label in labels], origin)
    found = {}
    for column in columns:
        matches = [label for label in labels if str(label) == column]
        if len(matches) > 1:
            raise ValueError(
                f"{origin}: column {column!r} is ambiguous: the columns {matches!r} all read {column!r}"
            )
        found[column] = matches[0]
    return found


def _same_lengths(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for c, values in table.items():
        if values.ndim != 1:
            raise ValueError(f"input: column {c!r} must be 1-D, got shape {values.shape}")
    lengths = {c: v.shape[0] for c, v in table.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{c}={n}" for c, n in lengths.items())
        raise ValueError(f"input: columns have different lengths ({detail})")
    return table


def _in_memory_columns(source, columns: list[str]) -> dict[str, np.ndarray]:
    module = type(source).__module__
    if module.startswith("pandas"):
        if not hasattr(source, "columns"):
            raise TypeError(f"a pandas source must be a DataFrame, got {type(source).__name__}")
        labels = _labels_by_name(source.columns, columns, "input")
        return _same_lengths({c: np.asarray(source[labels[c]].to_numpy()) for c in columns})
    if module.startswith("polars"):
        if not hasattr(source, "columns") or not hasattr(source, "get_column"):
            raise TypeError(f"a polars source must be a DataFrame, got {type(source).__name__}")
        require_columns(columns, list(source.columns), "input")
        return {c: np.asarray(source.get_column(c).to_numpy()) for c in columns}
    if module.startswith("pyarrow"):
        if not hasattr(source, "column_names"):
            raise TypeError(f"a pyarrow source must be a Table or RecordBatch, got {type(source).__name__}")
        require_columns(columns, list(source.column_names), "input")
        return {c: arrow_column(source.column(c), "input", c) for c in columns}
    if isinstance(source, Mapping):
        labels = _labels_by_name(source.keys(), columns, "input")
        return _same_lengths({c: np.asarray(source[labels[c]]) for c in columns})
    raise TypeError(
        "source must be file paths or globs, a pandas or polars DataFrame, a pyarrow Table, a dict of "
        f"arrays or a Ray Dataset, got {type(source).__name__}"
    )
