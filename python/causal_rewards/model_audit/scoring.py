"""``causal_rewards.score``: rewards of the chosen and rejected responses of preference pairs by a
local Hugging Face reward model, written in the layout of ``layout`` (resumable: see ``parts``).

The pairs are read in chunks of ``chunk_size``; within a chunk both responses of every pair are
scored together, longest input first, ``batch_size`` inputs per forward pass (so a batch pads
little, and memory runs out on the first batch if it runs out at all). The local engine scores on
this process's ``device``; ``engine="ray"`` on a Ray cluster (see ``ray_scoring``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import check_writable, progress_bar, show_progress
from ..options import check_choice, check_integer
from .features import token_counts
from .layout import PROMPT, REWARD_COLUMNS, ROW, TEXT_COLUMNS, TOKEN_COLUMNS, messages_type
from .pairs import PairSource
from .reward_model import ModelSpec, RewardModel, check_dtype

ENGINES = ("local", "ray")
DEFAULT_BATCH_SIZE = 16
DEFAULT_CHUNK_SIZE = 1024


@dataclass(frozen=True)
class ScoreOptions:
    """How to score (validated by ``of``)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_length: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    engine: str = "local"
    workers: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @classmethod
    def of(cls, *, batch_size=DEFAULT_BATCH_SIZE, max_length=None, device="auto", dtype="float32",
           engine="local", workers=None, chunk_size=DEFAULT_CHUNK_SIZE) -> ScoreOptions:
        if not isinstance(device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda:0', got {type(device).__name__}")
        return cls(
            batch_size=check_integer(batch_size, "batch_size", 1),
            max_length=None if max_length is None else check_integer(max_length, "max_length", 1),
            device=device,
            dtype=check_dtype(dtype),
            engine=check_choice("engine", engine, ENGINES),
            workers=None if workers is None else check_integer(workers, "workers", 1),
            chunk_size=check_integer(chunk_size, "chunk_size", 1),
        )


@dataclass
class Chunk:
    """Pairs ``first`` ... of the input; ``rewards`` (2, n): chosen and rejected, NaN until scored."""

    index: int
    first: int
    pairs: list
    rewards: np.ndarray
    complete: bool = False  # already written whole by an earlier run
    truncated: int = 0

    def __post_init__(self):
        self.kept = int(np.count_nonzero(~np.isnan(self.rewards[0])))  # scored by an earlier run

    def missing(self) -> np.ndarray:
        return np.flatnonzero(np.isnan(self.rewards[0]))


class LocalEngine:
    """Scores chunks in this process (the model loaded on first need)."""

    def __init__(self, spec: ModelSpec, options: ScoreOptions):
        self.spec, self.options, self.model = spec, options, None

    def run(self, chunks, bar):
        for chunk in chunks:
            todo = chunk.missing()
            if len(todo):
                if self.model is None:
                    self.model = RewardModel(self.spec, device=self.options.device, dtype=self.options.dtype)
                pairs = [chunk.pairs[i] for i in todo]
                prompts = None if pairs[0].prompt is None else [p.prompt for p in pairs]
                rc, rr, tc, tr = self.model.score_pairs(
                    prompts, [p.chosen for p in pairs], [p.rejected for p in pairs],
                    batch_size=self.options.batch_size, bar=bar,
                )
                chunk.rewards[:, todo] = rc, rr
                chunk.truncated += int(tc.sum() + tr.sum())
            bar.update(2 * (len(chunk.pairs) - len(todo)))
            yield chunk


def check_finite(chunk: Chunk) -> None:
    bad = np.flatnonzero(~np.isfinite(chunk.rewards).all(axis=0))
    if len(bad):
        row = chunk.first + int(bad[0])
        raise ValueError(
            f"the model gave a non-finite reward for row {row} ({len(bad)} rows in chunk {chunk.index}): a dtype "
            "with more range (--dtype float32) may help"
        )


def chunk_table(chunk: Chunk, extras, tokenizer):
    """The chunk in the output layout (a pyarrow Table)."""
    import pyarrow as pa

    pairs, n = chunk.pairs, len(chunk.pairs)
    columns = {ROW: pa.array(np.arange(chunk.first, chunk.first + n, dtype=np.int64))}
    if pairs[0].prompt is not None:  # every pair has one (one layout per input)
        prompts = [p.prompt for p in pairs]
        columns[PROMPT] = pa.array(prompts, type=pa.string() if isinstance(prompts[0], str) else messages_type())
    for name, role in zip(TEXT_COLUMNS, ("chosen", "rejected")):
        columns[name] = pa.array([getattr(p, role) for p in pairs], type=pa.string())
    for name, values in zip(REWARD_COLUMNS, chunk.rewards):
        columns[name] = pa.array(values, type=pa.float64())
    for name, texts in zip(TOKEN_COLUMNS, (columns["chosen"], columns["rejected"])):
        columns[name] = pa.array(token_counts(tokenizer, texts.to_pylist()), type=pa.int64())
    for name in extras:
        try:
            columns[name] = pa.array([p.extra.get(name) for p in pairs])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"column {name!r} (rows {chunk.first}-{chunk.first + n - 1}) cannot be written: {error}") from None
    return pa.table(columns)


def _check_out(out) -> Path:
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"--out {out}: the scored file is parquet: name it NAME.parquet")
    check_writable(path)
    return path


def _engine(spec: ModelSpec, options: ScoreOptions):
    if options.engine == "ray":
        from .ray_scoring import RayEngine

        return RayEngine(spec, options)
    return LocalEngine(spec, options)


def run_scoring(model, data, *, out=None, options: ScoreOptions, progress=None):
    """Scores ``data`` into ``out`` (or in memory); returns (summary dict, pyarrow Table or None)."""
    import pyarrow as pa

    from .parts import PartStore

    out = _check_out(out) if out is not None else None
    source = PairSource(data)
    total = source.validate()
    spec = ModelSpec.check(model, options.max_length)
    store = PartStore(out, spec.settings(options.dtype), options.chunk_size) if out is not None else None
    size = options.chunk_size

    def chunks():
        for k, pairs in enumerate(source.chunks(size)):
            if store is None:
                yield Chunk(k, k * size, pairs, np.full((2, len(pairs)), np.nan))
            else:
                rewards, complete = store.kept(k, k * size, pairs)
                yield Chunk(k, k * size, pairs, rewards, complete)

    tables, summary = [], {"pairs": total, "scored": 0, "kept": 0, "truncated": 0, "chunks": 0}
    with progress_bar(total=2 * total, desc="scoring", unit="response", enabled=show_progress(progress)) as bar:
        for chunk in _engine(spec, options).run(chunks(), bar):
            check_finite(chunk)
            summary["chunks"] += 1
            summary["truncated"] += chunk.truncated
            summary["kept"] += chunk.kept
            if chunk.complete:
                continue
            table = chunk_table(chunk, source.extras, spec.tokenizer)
            if store is None:
                tables.append(table)
            else:
                store.write(chunk.index, table)
    if store is not None:
        store.finish(summary["chunks"])
    summary["scored"] = total - summary["kept"]
    if summary["truncated"]:
        warnings.warn(
            f"{summary['truncated']} of {2 * total} inputs were longer than max_length {spec.max_length} tokens and "
            "were truncated",
            stacklevel=3,
        )
    table = None if store is not None else pa.concat_tables(tables, promote_options="permissive")
    return summary, table


def score(model, data, *, out=None, batch_size: int = DEFAULT_BATCH_SIZE, max_length: int | None = None,
          device: str = "auto", dtype: str = "float32", engine: str = "local", workers: int | None = None,
          chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool | None = None):
    """Scores the chosen and rejected responses of preference pairs with a local reward model.

    Args:
        model: path of a local Hugging Face folder of a sequence-classification model with one
            logit (hub names are refused: nothing is downloaded).
        data: pairs in TRL's layouts: JSONL / parquet / CSV paths or globs, a ``datasets`` folder,
            a ``datasets.Dataset``, a pandas DataFrame, a pyarrow Table, a list of rows or a dict of
            columns (see ``causal_rewards.model_audit.pairs``).
        out: a ``.parquet`` path to write (resumable: rows already scored there, or in the parts of
            an interrupted run, are kept); None keeps the result in memory only.
        batch_size: inputs per forward pass (scored longest first).
        max_length: tokens per input (longer ones are truncated and counted in a warning);
            default the model's limit, at most 4096.
        device: "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
        dtype: "float32", "float16", "bfloat16" or "auto" (the dtype stored with the model).
        engine: "local", or "ray" (one model per Ray actor; ``workers`` actors, default one per GPU
            of the cluster, else one).
        chunk_size: pairs per resumable chunk.
        progress: draw a progress bar (default: when stderr is a terminal).

    Returns:
        A pandas DataFrame in the scored layout: row, prompt (if any), chosen, rejected,
        reward_chosen, reward_rejected, tokens_chosen, tokens_rejected, then the input's other
        columns (see ``causal_rewards.model_audit.layout``).
    """
    options = ScoreOptions.of(batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
                              engine=engine, workers=workers, chunk_size=chunk_size)
    _, table = run_scoring(model, data, out=out, options=options, progress=progress)
    if table is None:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
    return table.to_pandas()
