"""A local Hugging Face reward model: found and checked offline, loaded once, scoring
(prompt, response) pairs in longest-first batches.

A reward model here is an ``AutoModelForSequenceClassification`` folder with one logit whose
weights hold the classification head. Its input for a prompt and a response:

- the tokenizer has a chat template and there is a prompt: the conversation (the prompt's messages,
  a text prompt as one user message, then the response as the assistant's message) rendered by the
  template and tokenized without adding special tokens (the template holds them);
- no chat template: the tokenizer's text pair (prompt, response), a conversational prompt's message
  contents joined by blank lines;
- no prompt: the response alone.

Inputs longer than ``max_length`` tokens are truncated (a text pair longest-first, a rendered
conversation at its end) and counted. Hub names are refused: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..options import check_integer

DTYPES = ("float32", "float16", "bfloat16", "auto")
#: The default --max-length: the model's own limit, capped here.
DEFAULT_MAX_LENGTH = 4096
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "tokenizer.model", "spiece.model", "added_tokens.json", "chat_template.jinja",
    "chat_template.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings, load reports and progress bars silenced, restored afterwards."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


@contextlib.contextmanager
def offline():
    """HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1) while loading: no network, ever."""
    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({name: "1" for name in saved})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def model_folder(model) -> Path:
    """The local model folder ``model`` names; ValueError for hub names and non-model folders."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be the path of a local model folder, got {type(model).__name__}")
    text = os.fspath(model)
    path = Path(text).expanduser()
    if not path.exists():
        if _HUB_NAME.match(text):
            raise ValueError(
                f"model {text!r} is not a local folder; it looks like a Hugging Face hub name, and models are "
                "only read from local folders (no network): download it to a folder and pass that folder"
            )
        raise FileNotFoundError(f"model folder {text} does not exist")
    if not path.is_dir():
        raise ValueError(f"model {text} is a file; expected a Hugging Face model folder")
    if not (path / "config.json").is_file():
        raise ValueError(f"model folder {text} has no config.json: not a Hugging Face model folder")
    return path


def fingerprint(folder: Path) -> str:
    """Identifies a model folder cheaply: the bytes of its config and tokenizer files, and the
    name, size and modification time of its weight files."""
    digest = hashlib.sha256()
    for name in ("config.json", *_TOKENIZER_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(folder.iterdir()):
        if path.suffix in _WEIGHT_SUFFIXES and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def load_tokenizer(model):
    """The tokenizer of a local model folder, loaded offline."""
    from transformers import AutoTokenizer

    folder = model_folder(model)
    with offline(), quiet_transformers():
        try:
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ValueError(f"model folder {folder}: cannot load its tokenizer: {_line(error)}") from None


def _line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return dtype


def resolve_device(device: str):
    """A torch.device: "auto" is cuda when available, else cpu; an unavailable device is an error."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: {_line(error)}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here")
    return resolved


@dataclass
class ModelSpec:
    """What is known of a reward model folder before its weights are loaded (cheap; checked)."""

    folder: Path
    tokenizer: object
    max_length: int
    chat_template: bool
    fingerprint: str
    vocab_size: int | None

    @classmethod
    def check(cls, model, max_length: int | None = None) -> ModelSpec:
        from transformers import AutoConfig

        folder = model_folder(model)
        with offline(), quiet_transformers():
            try:
                config = AutoConfig.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, KeyError) as error:
                raise ValueError(f"model folder {folder}: cannot read config.json: {_line(error)}") from None
        architectures = list(getattr(config, "architectures", None) or [])
        if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise ValueError(
                f"model folder {folder} holds a {architectures[0]} without a sequence-classification head; a reward "
                "model is a ...ForSequenceClassification with one logit"
            )
        if config.num_labels != 1:
            raise ValueError(
                f"model folder {folder}: the classification head has {config.num_labels} logits (num_labels); a reward "
                "model has one"
            )
        tokenizer = load_tokenizer(folder)
        vocab = getattr(config, "vocab_size", None)
        if vocab is not None and len(tokenizer) > vocab:
            raise ValueError(
                f"model folder {folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
                f"{vocab}: the tokenizer does not belong to this model"
            )
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"model folder {folder}: the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token  # decoder reward models pad with eos
        limit = _length_limit(tokenizer, config)
        if max_length is None:
            max_length = min(limit or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
        elif check_integer(max_length, "max_length", 1) > (limit or math.inf):
            raise ValueError(f"max_length {max_length} exceeds the model's limit of {limit} tokens")
        return cls(
            folder=folder,
            tokenizer=tokenizer,
            max_length=int(max_length),
            chat_template=bool(getattr(tokenizer, "chat_template", None)),
            fingerprint=fingerprint(folder),
            vocab_size=vocab,
        )

    def settings(self, dtype: str) -> dict:
        """What the scores depend on (a resumed run must match it)."""
        return {
            "model": str(self.folder.resolve()),
            "fingerprint": self.fingerprint,
            "max_length": self.max_length,
            "dtype": dtype,
            "input": "chat template" if self.chat_template else "text pair",
        }


def _length_limit(tokenizer, config) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    positions = getattr(config, "max_position_embeddings", None)
    return int(positions) if isinstance(positions, int) and positions > 0 else None


def prompt_messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n\n".join(m["content"] for m in prompt)


class RewardModel:
    """The loaded model (eval mode, on ``device`` in ``dtype``) with its checked ``spec``."""

    def __init__(self, spec: ModelSpec, *, device: str = "auto", dtype: str = "float32"):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.spec = spec
        self.tokenizer = spec.tokenizer
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        kwargs = {_dtype_keyword(): "auto" if dtype == "auto" else getattr(torch, dtype)}
        with offline(), quiet_transformers():
            try:
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    spec.folder, local_files_only=True, output_loading_info=True, **kwargs
                )
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise ValueError(f"model folder {spec.folder}: cannot load the model: {_line(error)}") from None
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
            raise ValueError(
                f"model folder {spec.folder}: the weights lack {shown}: no trained classification head (a base model, "
                "not a reward model)"
            )
        rows = model.get_input_embeddings().num_embeddings
        if len(self.tokenizer) > rows:
            raise ValueError(
                f"model folder {spec.folder}: the tokenizer has {len(self.tokenizer)} tokens but the model embeds "
                f"{rows}: the tokenizer does not belong to this model"
            )
        model.config.pad_token_id = self.tokenizer.pad_token_id  # where decoder models find the last token
        self.model = model.to(self.device).eval()

    def encode(self, prompts, responses: list[str]) -> tuple[list[dict], np.ndarray]:
        """Token ids (and masks) of each (prompt, response) input, and whether it was truncated.
        ``prompts`` is None (responses alone) or one prompt per response."""
        tokenizer, limit = self.tokenizer, self.spec.max_length
        with quiet_transformers():
            if prompts is not None and self.spec.chat_template:
                conversations = [
                    prompt_messages(p) + [{"role": "assistant", "content": r}] for p, r in zip(prompts, responses)
                ]
                texts = self._render(conversations)
                full = tokenizer(texts, add_special_tokens=False)
                encodings = [{k: full[k][i][:limit] for k in full} for i in range(len(texts))]
                truncated = np.array([len(ids) > limit for ids in full["input_ids"]])
                return encodings, truncated
            args = (responses,) if prompts is None else ([prompt_text(p) for p in prompts], responses)
            full = tokenizer(*args)
            encodings = [{k: full[k][i] for k in full} for i in range(len(responses))]
            truncated = np.array([len(ids) > limit for ids in full["input_ids"]])
            for i in np.flatnonzero(truncated):
                one = tokenizer(*(a[i] for a in args), truncation=True, max_length=limit)
                encodings[i] = {k: one[k] for k in one}
        return encodings, truncated

    def _render(self, conversations: list) -> list[str]:
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(conversations, tokenize=False)
        except (TemplateError, ValueError, TypeError, KeyError) as error:
            raise ValueError(f"model folder {self.spec.folder}: its chat template failed: {_line(error)}") from None

    def rewards(self, encodings: list[dict], *, batch_size: int, bar=None) -> np.ndarray:
        """The logit of each encoded input (float64), scored longest first in batches."""
        import torch

        order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i]["input_ids"]), i))
        out = np.empty(len(encodings), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                batch = self._pad([encodings[i] for i in index])
                try:
                    logits = self.model(**batch).logits
                except torch.OutOfMemoryError:
                    raise ValueError(
                        f"out of memory on {self.device} scoring {len(index)} inputs of up to "
                        f"{batch['input_ids'].shape[1]} tokens: lower --batch-size or --max-length"
                    ) from None
                out[index] = logits[:, 0].float().cpu().numpy()
                if bar is not None:
                    bar.update(len(index))
        return out

    def _pad(self, encodings: list[dict]) -> dict:
        """A batch padded on the right, whatever the tokenizer's side: real tokens keep the
        positions they have alone, and sequence-classification heads find the last one."""
        import torch

        width = max(len(e["input_ids"]) for e in encodings)
        fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0}
        return {
            key: torch.tensor(
                [list(e[key]) + [fill.get(key, 0)] * (width - len(e[key])) for e in encodings],
                dtype=torch.long, device=self.device,
            )
            for key in encodings[0]
        }

    def score_pairs(self, prompts, chosen: list[str], rejected: list[str], *, batch_size: int, bar=None):
        """Rewards of the chosen and rejected responses, and which inputs were truncated (both sides
        scored in one longest-first pass)."""
        n = len(chosen)
        both_prompts = None if prompts is None else list(prompts) + list(prompts)
        encodings, truncated = self.encode(both_prompts, list(chosen) + list(rejected))
        values = self.rewards(encodings, batch_size=batch_size, bar=bar)
        return values[:n], values[n:], truncated[:n], truncated[n:]


def _dtype_keyword() -> str:
    import transformers

    return "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
