"""Model inputs of the plain trainer: a tensor, or a tuple / dict of tensors sharing the first dimension.

The model is called as ``model(x)`` for a tensor, ``model(*x)`` for a tuple and ``model(**x)`` for a
dict, and must return one reward per row: shape (B,) or (B, 1), or an object with such ``logits``
(a transformers sequence-classification output).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def num_rows(x, name: str) -> int:
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            raise ValueError(f"{name} must have a first (example) dimension, got a 0-d tensor")
        return int(x.shape[0])
    parts = list(x.values()) if isinstance(x, Mapping) else list(x) if isinstance(x, (tuple, list)) else None
    if not parts:
        raise TypeError(
            f"{name} must be a tensor, or a non-empty tuple or dict of tensors, got {type(x).__name__}"
        )
    sizes = set()
    for part in parts:
        if not isinstance(part, torch.Tensor):
            raise TypeError(f"{name} must hold tensors, got {type(part).__name__}")
        sizes.add(int(part.shape[0]) if part.ndim else -1)
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"the tensors in {name} must share their first dimension, got sizes {sorted(sizes)}")
    return sizes.pop()


def _map(x, fn):
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, Mapping):
        return {key: fn(value) for key, value in x.items()}
    return tuple(fn(value) for value in x)


def take(x, index: torch.Tensor):
    return _map(x, lambda t: t[index.to(t.device)])


def to_device(x, device: torch.device):
    return _map(x, lambda t: t.to(device, non_blocking=True))


def concat(a, b):
    """Rows of a then rows of b, for one forward pass over chosen and rejected responses."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, Mapping):
        return {key: torch.cat([a[key], b[key]]) for key in a}
    return tuple(torch.cat([u, v]) for u, v in zip(a, b))


def forward(model: torch.nn.Module, x, rows: int) -> torch.Tensor:
    """One reward per row, as a 1-D tensor of length ``rows``."""
    if isinstance(x, torch.Tensor):
        out = model(x)
    elif isinstance(x, Mapping):
        out = model(**x)
    else:
        out = model(*x)
    if not isinstance(out, torch.Tensor):
        out = getattr(out, "logits", out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return a tensor of rewards (or an output with .logits), got {type(out)}"
        )
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or out.shape[0] != rows:
        raise ValueError(
            f"the model must map a batch of {rows} inputs to {rows} rewards (shape ({rows},) or ({rows}, 1)), "
            f"got shape {tuple(out.shape)}"
        )
    if not out.is_floating_point():
        raise TypeError(f"the model's rewards must be floating point, got {out.dtype}")
    return out
