"""Reading parquet, CSV and JSONL files as chunks of only the needed columns, so that files larger
than memory stream through with bounded memory.

Every chunk remembers its origin (file path or "input") and the row number of its first row in that
origin (0-based data rows, header excluded), so that errors can say exactly where the bad value is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PARQUET = (".parquet", ".pq")
JSONL = (".jsonl", ".ndjson", ".json")
CSV = (".csv", ".tsv")


@dataclass
class Chunk:
    """Columns of consecutive rows; ``offset`` is the first row's number within ``origin``."""

    columns: dict[str, np.ndarray]
    origin: str
    offset: int

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def file_kind(path: str) -> str:
    """The kind of file ("parquet", "csv" or "jsonl") by its suffix (compression suffixes ignored)."""
    lower = path.lower()
    for suffix in (".gz", ".bz2", ".zst"):
        lower = lower.removesuffix(suffix)
    for kind, suffixes in (("parquet", PARQUET), ("jsonl", JSONL), ("csv", CSV)):
        if lower.endswith(suffixes):
            return kind
    raise ValueError(f"{path}: unknown file type (expected .parquet, .jsonl/.json or .csv)")


def require_columns(columns, available, origin: str) -> None:
    """ValueError naming the first of ``columns`` that is not ``available`` in ``origin``."""
    for column in columns:
        if column not in available:
            shown = ", ".join(repr(a) for a in list(available)[:20])
            raise ValueError(f"{origin}: column {column!r} not found (columns: {shown})")


def arrow_column(column, origin: str, name: str) -> np.ndarray:
    """A pyarrow column as numpy (dictionaries decoded, decimals as float64, integer nulls as NaN)."""
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


def file_chunks(path: str, columns: list[str], chunk_rows: int) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` rows of ``columns``; errors name ``path``."""
    kind = file_kind(path)
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
    require_columns(columns, available, path)
    offset = 0
    try:
        for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns):
            yield Chunk({c: arrow_column(batch.column(c), path, c) for c in columns}, path, offset)
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
    require_columns(columns, reader.schema.names, path)
    offset = 0
    pending: list = []
    try:
        for batch in reader:
            pending.append(batch)
            while sum(b.num_rows for b in pending) >= chunk_rows:
                table = pa.Table.from_batches(pending)
                head, pending = table.slice(0, chunk_rows), [b for b in table.slice(chunk_rows).to_batches()]
                yield Chunk({c: arrow_column(head.column(c), path, c) for c in columns}, path, offset)
                offset += head.num_rows
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot parse csv after row {offset}: {error}") from None
    if pending and sum(b.num_rows for b in pending):
        table = pa.Table.from_batches(pending)
        yield Chunk({c: arrow_column(table.column(c), path, c) for c in columns}, path, offset)


def _jsonl_chunks(path, columns, chunk_rows):
    import pandas as pd

    offset = 0
    try:
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
        for frame in reader:
            require_columns(columns, [str(c) for c in frame.columns], path)
            yield Chunk({c: np.asarray(frame[c].to_numpy()) for c in columns}, path, offset)
            offset += len(frame)
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: invalid JSON lines after row {offset}: {error}") from None
