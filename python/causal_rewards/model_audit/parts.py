"""Resumable output of ``score``: scored chunks kept beside the output until the whole file exists.

While scoring into ``DIR/NAME.parquet``, every chunk of ``chunk_size`` pairs (chunk k holds rows
k * chunk_size ...) is written to ``DIR/.NAME.parquet.parts/part-0000k.parquet`` through a
temporary file renamed into place, so a part is whole or absent. The folder's ``run.json`` holds
the settings the scores depend on. When every chunk is written, the parts are concatenated into
the output (again through a temporary file and a rename) and the folder is removed: the output
is never half a file.

An interrupted run leaves its parts; rerunning the same command keeps them and scores the rest.
Rows already in an existing output are kept as well. A row is kept only when its prompt and texts
are those of the input's row of the same number, and only from a run with the same settings
(another model, max_length or dtype is an error: remove the output or choose another path).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .._io import atomic_save, atomic_write
from .layout import METADATA_KEY, PROMPT, REWARD_COLUMNS, ROW, TEXT_COLUMNS

MANIFEST = "run.json"


def _differences(saved: dict, settings: dict) -> str:
    keys = sorted(set(saved) | set(settings))
    return "; ".join(f"{k} {saved.get(k)!r} (now {settings.get(k)!r})" for k in keys if saved.get(k) != settings.get(k))


def read_settings(path: Path) -> dict:
    """The scoring settings stored in a scored parquet file; ValueError when it has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} exists and is not a parquet file ({error}): remove it or choose another --out") from None
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} exists and was not written by crm score: remove it or choose another --out")
    return json.loads(metadata[METADATA_KEY])


def _rows_of(table) -> dict:
    """row -> ((prompt, chosen, rejected), (reward_chosen, reward_rejected))"""
    columns = table.column_names
    prompts = table.column(PROMPT).to_pylist() if PROMPT in columns else [None] * table.num_rows
    chosen, rejected = (table.column(c).to_pylist() for c in TEXT_COLUMNS)
    rc, rr = (table.column(c).to_numpy() for c in REWARD_COLUMNS)
    rows = table.column(ROW).to_pylist()
    return {row: ((p, c, r), (a, b)) for row, p, c, r, a, b in zip(rows, prompts, chosen, rejected, rc, rr)}


class PartStore:
    """The parts folder of one output path (see the module docstring)."""

    def __init__(self, out, settings: dict, chunk_size: int):
        import pyarrow.parquet as pq

        self.out = Path(out)
        self.folder = self.out.parent / f".{self.out.name}.parts"
        self.settings = settings
        self.manifest = {"settings": settings, "chunk_size": chunk_size}
        if self.folder.exists():
            try:
                saved = json.loads((self.folder / MANIFEST).read_text())
            except (OSError, ValueError):
                raise ValueError(f"{self.folder}: an unfinished run without a readable {MANIFEST}: remove the folder") from None
            if saved != self.manifest:
                flat = {**saved.get("settings", {}), "chunk_size": saved.get("chunk_size")}
                now = {**settings, "chunk_size": chunk_size}
                raise ValueError(
                    f"{self.folder}: an unfinished run with other settings ({_differences(flat, now)}): rerun with its "
                    "settings, or remove the folder to start over"
                )
        self.previous = {}
        if self.out.exists():
            saved = read_settings(self.out)
            if saved != settings:
                raise ValueError(
                    f"{self.out} was scored with other settings ({_differences(saved, settings)}): remove it or choose "
                    "another --out"
                )
            names = pq.read_schema(self.out).names
            wanted = [c for c in (ROW, PROMPT, *TEXT_COLUMNS, *REWARD_COLUMNS) if c in names]
            self.previous = _rows_of(pq.read_table(self.out, columns=wanted))

    def part_path(self, k: int) -> Path:
        return self.folder / f"part-{k:06d}.parquet"

    def kept(self, k: int, first: int, pairs) -> tuple[np.ndarray, bool]:
        """(2, n) rewards of the chunk's rows already scored (NaN where not), and whether part k
        already holds exactly this chunk."""
        import pyarrow.parquet as pq

        part = {}
        path = self.part_path(k)
        if path.exists():
            part = _rows_of(pq.read_table(path))
        rewards = np.full((2, len(pairs)), np.nan)
        from_part = 0
        for i, pair in enumerate(pairs):
            texts = (pair.prompt, pair.chosen, pair.rejected)
            in_part, in_previous = part.get(first + i), self.previous.get(first + i)
            if in_part is not None and in_part[0] == texts:
                rewards[:, i] = in_part[1]
                from_part += 1
            elif in_previous is not None and in_previous[0] == texts:
                rewards[:, i] = in_previous[1]
        return rewards, from_part == len(pairs) == len(part)

    def write(self, k: int, table) -> None:
        import pyarrow.parquet as pq

        if not self.folder.exists():
            self.folder.mkdir()
            atomic_write(self.folder / MANIFEST, json.dumps(self.manifest, indent=1) + "\n")
        atomic_save(self.part_path(k), lambda temporary: pq.write_table(table, temporary))

    def finish(self, chunks: int) -> None:
        """Concatenates parts 0 .. chunks - 1 into the output and removes the folder."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        paths = [self.part_path(k) for k in range(chunks)]
        schema = pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive")
        schema = schema.with_metadata({METADATA_KEY: json.dumps(self.settings, sort_keys=True)})

        def write(temporary):
            with pq.ParquetWriter(temporary, schema) as writer:
                for path in paths:
                    writer.write_table(pq.read_table(path).cast(schema))

        atomic_save(self.out, write)
        shutil.rmtree(self.folder)
