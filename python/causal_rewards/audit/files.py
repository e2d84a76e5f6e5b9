"""Reading parquet, CSV and JSONL files as chunks of only the needed columns, so that files larger
than memory stream through with bounded memory.

Every chunk remembers its origin (file path or "input") and the row number of its first row in that
origin (0-based data rows, header excluded), so that errors can say exactly where the bad value is.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PARQUET = (".parquet", ".pq")
JSONL = (".jsonl", ".ndjson", ".json")
CSV = (".csv", ".tsv")
#: pyarrow reads CSV in blocks of this size; a parse error is located within its block.
CSV_BLOCK_BYTES = 1 << 22


@dataclass
class Chunk:
    """Columns of consecutive rows; ``offset`` is the first row's number within ``origin``; ``names``
    maps a column to the source's column it was read from, where they differ (paired data)."""

    columns: dict[str, np.ndarray]
    origin: str
    offset: int
    names: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def source_name(self, column: str) -> str:
        """The source's name of a column, for messages."""
        return (self.names or {}).get(column, column)


@dataclass(frozen=True)
class FileState:
    """What the first pass saw of a file: its size, modification time and rows."""

    size: int
    mtime_ns: int
    rows: int = 0

    @classmethod
    def of(cls, path: str, rows: int = 0) -> FileState:
        status = os.stat(path)
        return cls(status.st_size, status.st_mtime_ns, rows)


def check_unchanged(path: str, before: FileState, rows: int | None = None) -> None:
    """ValueError naming ``path`` when its size or modification time (or, given, its rows) differ from
    what the first pass saw: the two passes must read the same data."""
    now = FileState.of(path, before.rows if rows is None else rows)
    if now != before:
        changes = [
            f"{name} {getattr(before, name)} -> {getattr(now, name)}"
            for name in ("size", "mtime_ns", "rows")
            if getattr(before, name) != getattr(now, name)
        ]
        raise ValueError(
            f"{path}: the file changed between the audit's two passes ({', '.join(changes)}); "
            "audit files that are not being written"
        )


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


def file_columns(path: str) -> list[str]:
    """The names of a file's columns (parquet schema, CSV header, keys of the first JSON line); errors
    name ``path``."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                return list(pq.ParquetFile(path).schema_arrow.names)
            except pa.ArrowException as error:
                raise ValueError(f"{path}: cannot read parquet file: {error}") from None
        if kind == "csv":
            return _csv_header(path, _delimiter(path))
        _check_json_lines(path)
        with _text_lines(path) as lines:
            first = next((line for line in lines if line.strip()), "{}")
        value = json.loads(first)
        return [str(key) for key in value] if isinstance(value, dict) else []
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())
        if message.startswith(path):
            raise
        raise type(error)(f"{path}: {message}") from None


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
        # A row group at a time: one reader over the whole file keeps memory that grows with the
        # file (400 MiB for 3e7 rows of two columns, against 150 MiB this way).
        for group in range(reader.num_row_groups):
            for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns, row_groups=[group]):
                yield Chunk({c: arrow_column(batch.column(c), path, c) for c in columns}, path, offset)
                offset += batch.num_rows
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read parquet file after row {offset}: {error}") from None


def _text_lines(path: str):
    """The file's lines as text (decompressed by suffix, as pyarrow and pandas do)."""
    import pyarrow as pa

    stream = pa.input_stream(path, compression="detect")
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")


def _delimiter(path: str) -> str:
    """Tab for .tsv files (compressed or not), else comma."""
    return "\t" if path.lower().removesuffix(".gz").removesuffix(".bz2").endswith(".tsv") else ","


def _csv_header(path: str, delimiter: str) -> list[str]:
    with _text_lines(path) as lines:
        return next(csv.reader([lines.readline()], delimiter=delimiter), [])


def _csv_options(path: str, columns: list[str]):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parse = pcsv.ParseOptions(delimiter=_delimiter(path))
    require_columns(columns, _csv_header(path, parse.delimiter), path)
    # The reward (first column asked for) is read as float64: pyarrow infers the other columns' types
    # from the first block, and a reward column of integers that later turns decimal must not fail.
    convert = pcsv.ConvertOptions(column_types={columns[0]: pa.float64()}, include_columns=columns)
    return parse, convert


def _csv_bad_row(path: str, parse, convert, schema, start: int) -> int | None:
    """The first data row at or after ``start`` that pyarrow cannot read with the reader's options and
    column types, found by parsing the header with ever longer runs of the lines that follow (rows
    are counted as lines, so a quoted field holding a newline counts twice); None if none fails."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    types = pcsv.ConvertOptions(
        column_types={f.name: f.type for f in schema} if schema else convert.column_types,
        include_columns=convert.include_columns,
    )
    with _text_lines(path) as text:
        header = text.readline()
        lines, size = [], 0
        for number, line in enumerate(text):
            if number >= start:
                lines.append(line)
                size += len(line)
                if size > 2 * CSV_BLOCK_BYTES:  # the failing block lies within
                    break

    def reads(count: int) -> bool:
        data = (header + "".join(lines[:count])).encode()
        try:
            pcsv.read_csv(io.BytesIO(data), parse_options=parse, convert_options=types)
        except pa.ArrowInvalid:
            return False
        return True

    if reads(len(lines)):
        return None
    good, bad = 0, len(lines)  # reads(good) and not reads(bad)
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if reads(middle) else (good, middle)
    return start + bad - 1


def _csv_chunks(path, columns, chunk_rows):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parse, convert = _csv_options(path, columns)
    read = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    offset, rows_read, pending, reader = 0, 0, [], None
    try:
        reader = pcsv.open_csv(path, parse_options=parse, convert_options=convert, read_options=read)
        for batch in reader:
            rows_read += batch.num_rows
            pending.append(batch)
            while sum(b.num_rows for b in pending) >= chunk_rows:
                table = pa.Table.from_batches(pending)
                head, pending = table.slice(0, chunk_rows), table.slice(chunk_rows).to_batches()
                yield Chunk({c: arrow_column(head.column(c), path, c) for c in columns}, path, offset)
                offset += head.num_rows
    except pa.ArrowInvalid as error:
        schema = None if reader is None else reader.schema
        row = _csv_bad_row(path, parse, convert, schema, rows_read)
        where = f"at row {row}" if row is not None else f"at or after row {rows_read}"
        raise ValueError(f"{path}: cannot read csv {where}: {error}") from None
    finally:
        if reader is not None:
            reader.close()  # its read-ahead thread must not outlive an abandoned read
    if pending and sum(b.num_rows for b in pending):
        table = pa.Table.from_batches(pending)
        yield Chunk({c: arrow_column(table.column(c), path, c) for c in columns}, path, offset)


def _json_bad_row(path: str, start: int) -> int | None:
    """The first row (non-blank line) at or after ``start`` that is not a JSON object; None if none."""
    with _text_lines(path) as text:
        row = 0
        for line in text:
            if not line.strip():
                continue
            if row >= start:
                try:
                    value = json.loads(line)
                except ValueError:
                    return row
                if not isinstance(value, dict):
                    return row
            row += 1
    return None


def _check_json_lines(path: str) -> None:
    """A JSON array (one value for the whole file) is refused: the audit reads one object per line."""
    with _text_lines(path) as text:
        start = text.read(4096).lstrip()
    if start.startswith("["):
        raise ValueError(
            f"{path}: the file holds a JSON array; the audit reads JSON lines, one object per line "
            "(convert it, e.g. with jq -c '.[]')"
        )


def _jsonl_chunks(path, columns, chunk_rows):
    import pandas as pd

    _check_json_lines(path)
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
        row = _json_bad_row(path, offset)
        where = f"at row {row}" if row is not None else f"at or after row {offset}"
        raise ValueError(f"{path}: invalid JSON lines {where}: {error}") from None
