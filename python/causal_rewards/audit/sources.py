"""Where audit rows come from: files (parquet, JSONL, CSV; paths, globs, directories), in-memory
tables (pandas, polars, pyarrow, dict of arrays), read as re-iterable chunks of only the needed
columns, so that files larger than memory stream through with bounded memory.

Every chunk remembers its origin (file path or "input") and the row number of its first row in that
origin (0-based data rows, header excluded), so that errors can say exactly where the bad value is.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PARQUET = (".parquet", ".pq")
JSONL = (".jsonl", ".ndjson", ".json")
CSV = (".csv", ".tsv")
DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass
class Chunk:
    """Columns of consecutive rows; ``offset`` is the first row's number within ``origin``."""

    columns: dict[str, np.ndarray]
    origin: str
    offset: int

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _kind(path: str) -> str:
    lower = path.lower()
    for suffix in (".gz", ".bz2", ".zst"):
        lower = lower.removesuffix(suffix)
    for kind, suffixes in (("parquet", PARQUET), ("jsonl", JSONL), ("csv", CSV)):
        if lower.endswith(suffixes):
            return kind
    raise ValueError(f"{path}: unknown file type (expected .parquet, .jsonl/.json or .csv)")


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
        _kind(path)
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
        self.chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_rows}")
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
            yield from _file_chunks(path, self.columns, self.chunk_rows)


def _in_memory_columns(source, columns: list[str]) -> dict[str, np.ndarray]:
    module = type(source).__module__
    if module.startswith("pandas"):
        if not hasattr(source, "columns"):
            raise TypeError(f"a pandas source must be a DataFrame, got {type(source).__name__}")
        available = [str(c) for c in source.columns]
        _require(columns, available, "input")
        return {c: _numpy(source[c].to_numpy()) for c in columns}
    if module.startswith("polars"):
        if not hasattr(source, "columns") or not hasattr(source, "get_column"):
            raise TypeError(f"a polars source must be a DataFrame, got {type(source).__name__}")
        _require(columns, list(source.columns), "input")
        return {c: _numpy(source.get_column(c).to_numpy()) for c in columns}
    if module.startswith("pyarrow"):
        if not hasattr(source, "column_names"):
            raise TypeError(f"a pyarrow source must be a Table or RecordBatch, got {type(source).__name__}")
        _require(columns, list(source.column_names), "input")
        return {c: _arrow_column(source.column(c), "input", c) for c in columns}
    if isinstance(source, Mapping):
        _require(columns, [str(k) for k in source], "input")
        table = {c: _numpy(np.asarray(source[c])) for c in columns}
        lengths = {c: (v.shape[0] if v.ndim == 1 else None) for c, v in table.items()}
        for c, length in lengths.items():
            if length is None:
                raise ValueError(f"input: column {c!r} must be 1-D, got shape {table[c].shape}")
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{c}={n}" for c, n in lengths.items())
            raise ValueError(f"input: columns have different lengths ({detail})")
        return table
    raise TypeError(
        "source must be file paths or globs, a pandas or polars DataFrame, a pyarrow Table, a dict of "
        f"arrays or a Ray Dataset, got {type(source).__name__}"
    )


def _numpy(values) -> np.ndarray:
    return np.asarray(values)


def _require(columns, available, origin: str) -> None:
    for column in columns:
        if column not in available:
            shown = ", ".join(repr(a) for a in list(available)[:20])
            raise ValueError(f"{origin}: column {column!r} not found (columns: {shown})")


def _arrow_column(column, origin: str, name: str) -> np.ndarray:
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    if (pa.types.is_integer(column.type) or pa.types.is_boolean(column.type)) and column.null_count:
        column = column.cast(pa.float64())  # nulls become NaN
    try:
        return np.asarray(column.to_numpy(zero_copy_only=False))
    except (pa.ArrowException, ValueError, TypeError) as error:
        raise ValueError(f"{origin}: column {name!r} cannot be read as an array: {error}") from None


def _file_chunks(path: str, columns: list[str], chunk_rows: int) -> Iterator[Chunk]:
    kind = _kind(path)
    try:
        if kind == "parquet":
            yield from _parquet_chunks(path, columns, chunk_rows)
        elif kind == "csv":
            yield from _csv_chunks(path, columns, chunk_rows)
        else:
            yield from _jsonl_chunks(path, columns, chunk_rows)
    except (OSError, ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        if message.startswith(path):
            raise
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise type(error)(f"{path}: {message}") from None
        raise ValueError(f"{path}: cannot read {kind} file: {message}") from None


def _parquet_chunks(path, columns, chunk_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        available = reader.schema_arrow.names
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read parquet file: {error}") from None
    _require(columns, available, path)
    offset = 0
    try:
        for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns):
            yield Chunk({c: _arrow_column(batch.column(c), path, c) for c in columns}, path, offset)
            offset += batch.num_rows
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read parquet file after row {offset}: {error}") from None


def _csv_chunks(path, columns, chunk_rows):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parse = pcsv.ParseOptions(delimiter="\t" if path.lower().rstrip(".gz").endswith(".tsv") else ",")
    # The reward (first column asked for) is read as float64: pyarrow infers the other columns' types
    # from the first block, and a reward column of integers that later turns decimal must not fail.
    convert = pcsv.ConvertOptions(column_types={columns[0]: pa.float64()})
    try:
        reader = pcsv.open_csv(
            path,
            parse_options=parse,
            convert_options=convert,
            read_options=pcsv.ReadOptions(block_size=1 << 22),
        )
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read csv file: {error}") from None
    _require(columns, reader.schema.names, path)
    offset = 0
    pending: list = []
    try:
        for batch in reader:
            pending.append(batch)
            while sum(b.num_rows for b in pending) >= chunk_rows:
                table = pa.Table.from_batches(pending)
                head, pending = table.slice(0, chunk_rows), [b for b in table.slice(chunk_rows).to_batches()]
                yield Chunk({c: _arrow_column(head.column(c), path, c) for c in columns}, path, offset)
                offset += head.num_rows
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot parse csv after row {offset}: {error}") from None
    if pending and sum(b.num_rows for b in pending):
        table = pa.Table.from_batches(pending)
        yield Chunk({c: _arrow_column(table.column(c), path, c) for c in columns}, path, offset)


def _jsonl_chunks(path, columns, chunk_rows):
    import pandas as pd

    offset = 0
    try:
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
        for frame in reader:
            _require(columns, [str(c) for c in frame.columns], path)
            yield Chunk({c: _numpy(frame[c].to_numpy()) for c in columns}, path, offset)
            offset += len(frame)
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: invalid JSON lines after row {offset}: {error}") from None
