"""Preference pairs from TRL's dataset layouts, read from files or in-memory objects.

Layouts (each row one pair; every row of a source in the same layout):

- standard: ``chosen`` and ``rejected`` texts, with an optional ``prompt`` text (without it, each
  text is scored alone);
- conversational: ``chosen`` and ``rejected`` lists of messages ``{"role", "content"}``. With a
  ``prompt`` list of messages, each of ``chosen`` and ``rejected`` is one assistant message (or its
  text); without one, the prompt is the longest common prefix of the two conversations and each
  must end with exactly one assistant message after it (TRL's implicit prompt).

Sources: JSON lines (``.jsonl``, ``.json``; a ``.json`` file may also hold one array of rows),
parquet, CSV / TSV (standard layout only: every cell is text), a ``datasets`` folder saved with
``save_to_disk``, paths, globs and folders of such files; in Python also a ``datasets.Dataset``,
a pandas DataFrame, a pyarrow Table, a list of row dicts or a dict of columns.
Columns other than the layout's are carried along as they are.
Errors name the source and the 0-based row.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..audit.sources import expand_paths, is_path_source
from .layout import RESERVED

LAYOUT = ("prompt", "chosen", "rejected")
IN_MEMORY = "input"


@dataclass
class Pair:
    """One preference pair: ``prompt`` is None, a text, or a list of messages; ``chosen`` and
    ``rejected`` are the response texts; ``extra`` the other columns of the row."""

    prompt: str | list | None
    chosen: str
    rejected: str
    extra: dict = field(default_factory=dict)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _listlike(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _messages(value, where: str, name: str) -> list[dict]:
    out = []
    for i, message in enumerate(list(value)):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(f"{where}: {name!r}[{i}] is not a message with a 'role' and a 'content'")
        content = message.get("content")
        if not isinstance(content, str):
            raise TypeError(f"{where}: {name!r}[{i}] must have text content, got {type(content).__name__}")
        out.append({"role": message["role"], "content": content})
    return out


def _text(value, where: str, name: str) -> str:
    if _missing(value):
        raise ValueError(f"{where}: {name!r} is missing")
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name!r} must be a text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where}: {name!r} is empty")
    return value


def _completion(value, where: str, name: str) -> str:
    """The response text of a completion: a text, or one assistant message."""
    if isinstance(value, str) or _missing(value):
        return _text(value, where, name)
    messages = _messages(value, where, name)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = [m["role"] for m in messages]
        raise ValueError(f"{where}: {name!r} must be one assistant message after the prompt, got roles {roles}")
    return _text(messages[0]["content"], where, name)


def _shared_prefix(chosen: list, rejected: list) -> int:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return n


def _prompt(value, where: str):
    if _listlike(value):
        messages = _messages(value, where, "prompt")
        if not any(m["content"].strip() for m in messages):
            raise ValueError(f"{where}: 'prompt' is empty")
        return messages
    return _text(value, where, "prompt")


def to_pair(row: Mapping, where: str, has_prompt: bool, extras: Sequence[str]) -> Pair:
    """A row in one of the layouts as a Pair (ValueError naming ``where`` and the column)."""
    for name in ("chosen", "rejected") + (("prompt",) if has_prompt else ()):
        if name not in row:
            raise ValueError(f"{where}: no {name!r}")
    chosen, rejected = row["chosen"], row["rejected"]
    extra = {name: row.get(name) for name in extras}
    if has_prompt:
        prompt = _prompt(row["prompt"], where)
        if isinstance(prompt, str) and (_listlike(chosen) or _listlike(rejected)):
            raise ValueError(f"{where}: a text 'prompt' with message-list responses: use one layout")
        return Pair(prompt, _completion(chosen, where, "chosen"), _completion(rejected, where, "rejected"), extra)
    if _listlike(chosen) and _listlike(rejected):
        chosen = _messages(chosen, where, "chosen")
        rejected = _messages(rejected, where, "rejected")
        shared = _shared_prefix(chosen, rejected)
        if shared == 0:
            raise ValueError(f"{where}: 'chosen' and 'rejected' share no prompt messages (and there is no 'prompt')")
        return Pair(
            chosen[:shared],
            _completion(chosen[shared:], where, "chosen"),
            _completion(rejected[shared:], where, "rejected"),
            extra,
        )
    if _listlike(chosen) or _listlike(rejected):
        raise ValueError(f"{where}: one of 'chosen' and 'rejected' is a message list and the other is not")
    return Pair(None, _text(chosen, where, "chosen"), _text(rejected, where, "rejected"), extra)


class PairSource:
    """Re-iterable preference pairs from any supported source, validated in a first pass."""

    def __init__(self, data):
        self.data = data
        self.readers: list[tuple[str, object]] = _readers(data)
        self.has_prompt: bool | None = None
        self.extras: list[str] = []
        self.count: int | None = None

    def rows(self) -> Iterator[tuple[str, dict]]:
        """(where, row dict) for every row of every origin, ``where`` naming origin and row; the
        columns of each origin are checked at its first row."""
        for origin, read in self.readers:
            for i, row in enumerate(read()):
                if not isinstance(row, Mapping):
                    raise TypeError(f"{origin}: row {i} is not an object with columns")
                if i == 0:
                    self._check_columns(origin, [str(c) for c in row])
                yield f"{origin}: row {i}", row

    def _check_columns(self, origin: str, columns: list[str]) -> None:
        shown = ", ".join(repr(c) for c in columns[:20])
        for name in ("chosen", "rejected"):
            if name not in columns:
                hint = "; a 'messages' column holds one conversation, not a preference pair" if "messages" in columns else ""
                raise ValueError(f"{origin}: column {name!r} not found (columns: {shown}){hint}")
        if self.has_prompt is None:
            self.has_prompt = "prompt" in columns
            self.extras = [c for c in columns if c not in LAYOUT and c not in RESERVED]
        elif self.has_prompt and "prompt" not in columns:
            raise ValueError(f"{origin}: column 'prompt' not found (columns: {shown}), unlike the first source")

    def pairs(self) -> Iterator[Pair]:
        for where, row in self.rows():
            yield to_pair(row, where, self.has_prompt, self.extras)

    def validate(self) -> int:
        """Reads every row once (errors before any work is done); the number of pairs."""
        first = None
        count = 0
        for where, row in self.rows():
            pair = to_pair(row, where, self.has_prompt, self.extras)
            layout = "no prompt" if pair.prompt is None else "a text prompt" if isinstance(pair.prompt, str) else "messages"
            if first is None:
                first = layout
            elif layout != first:
                raise ValueError(f"{where}: {layout}, unlike the first row ({first}): use one layout")
            count += 1
        if count == 0:
            raise ValueError("the data holds no rows")
        self.count = count
        return count

    def chunks(self, size: int) -> Iterator[list[Pair]]:
        chunk: list[Pair] = []
        for pair in self.pairs():
            chunk.append(pair)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _readers(data) -> list[tuple[str, object]]:
    if is_path_source(data):
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        readers = []
        for path in paths:
            path = os.fspath(path)
            if _is_datasets_folder(path):
                readers.append((path, _dataset_rows_of_folder(path)))
            else:
                readers.extend((f, _file_rows(f)) for f in expand_paths(path))
        return readers
    return [(IN_MEMORY, _object_rows(data))]


def _is_datasets_folder(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json")
    )


def _require_datasets():
    try:
        import datasets
    except ModuleNotFoundError:
        raise ValueError("reading a datasets folder needs the datasets package: pip install datasets") from None
    return datasets


def _dataset_rows_of_folder(path: str):
    def read():
        datasets = _require_datasets()
        try:
            loaded = datasets.load_from_disk(path)
        except (OSError, ValueError, FileNotFoundError) as error:
            raise ValueError(f"{path}: cannot load the datasets folder: {error}") from None
        yield from _dataset_rows(loaded, path)

    return read


def _dataset_rows(dataset, origin: str):
    if isinstance(dataset, dict):  # DatasetDict, IterableDatasetDict
        splits = ", ".join(map(str, dataset.keys()))
        raise TypeError(f"{origin}: a DatasetDict (splits {splits}): pass one split, e.g. data['train']")
    if hasattr(dataset, "iter") and hasattr(dataset, "num_rows"):
        for batch in dataset.iter(batch_size=1000):
            names = list(batch)
            for values in zip(*(batch[n] for n in names)):
                yield dict(zip(names, values))
    else:
        yield from dataset  # an IterableDataset


def _object_rows(data):
    module = type(data).__module__
    if module.startswith("datasets"):
        return lambda: _dataset_rows(data, IN_MEMORY)
    if module.startswith("pandas"):
        if not hasattr(data, "iloc"):
            raise TypeError(f"data must be a DataFrame, got pandas {type(data).__name__}")
        frame = data

        def frame_rows():
            for start in range(0, len(frame), 4096):
                yield from frame.iloc[start : start + 4096].to_dict("records")

        return frame_rows
    if module.startswith("pyarrow"):
        if not hasattr(data, "to_batches"):
            raise TypeError(f"data must be a pyarrow Table, got {type(data).__name__}")
        return lambda: (row for batch in data.to_batches(max_chunksize=4096) for row in batch.to_pylist())
    if isinstance(data, Mapping):
        columns = {str(k): list(v) for k, v in data.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"input: columns have different lengths ({lengths})")
        return lambda: (dict(zip(columns, values)) for values in zip(*columns.values()))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return lambda: iter(data)
    raise TypeError(
        "data must be file paths or globs, a datasets folder or Dataset, a pandas DataFrame, a pyarrow Table, "
        f"a list of rows or a dict of columns, got {type(data).__name__}"
    )


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _file_rows(path: str):
    lower = path.lower().removesuffix(".gz")
    if lower.endswith((".parquet", ".pq")):
        return lambda: _parquet_rows(path)
    if lower.endswith((".csv", ".tsv")):
        return lambda: _csv_rows(path, "\t" if lower.endswith(".tsv") else ",")
    return lambda: _json_rows(path)


def _parquet_rows(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        for batch in reader.iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read parquet file: {error}") from None


def _json_rows(path: str):
    with _open_text(path) as handle:
        try:
            first = handle.read(1)
            while first.isspace():
                first = handle.read(1)
            if first == "[":  # one JSON array of rows
                rows = json.loads(first + handle.read())
                if not isinstance(rows, list):
                    raise ValueError("expected an array of rows")
                yield from rows
                return
            line_number = 0
            pending = first + handle.readline()
            while pending:
                line_number += 1
                if pending.strip():
                    try:
                        yield json.loads(pending)
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}: line {line_number}: invalid JSON: {error}") from None
                pending = handle.readline()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text: {error}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None


def _csv_rows(path: str, delimiter: str):
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # responses can be long
    try:
        with _open_text(path) as handle:
            try:
                yield from csv.DictReader(handle, delimiter=delimiter, strict=True)
            except csv.Error as error:
                raise ValueError(f"{path}: invalid CSV: {error}") from None
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not UTF-8 text: {error}") from None
    finally:
        csv.field_size_limit(limit)
