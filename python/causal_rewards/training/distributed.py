"""The global batch for the MMD penalty under data parallelism (DDP / Accelerate, as TRL runs them).

Each rank sees B pairs; the penalty must see the global batch of W * B pairs, or every bin would hold a
sliver of the samples. ``gather_global`` all-gathers rewards, bins and groups (ranks may hold different
sizes: each is padded to the largest, then trimmed) and puts this rank's own differentiable rewards in
its slot, so the penalty is computed on the global batch with gradients through this rank's part only.

DDP then averages gradients over the W ranks, while the gradient of the global penalty P with respect
to the parameters is the *sum* over ranks of the parts through each rank's own rewards. ``scale_grad``
returns a tensor with the value of P and W times its gradient, so that DDP's average gives exactly the
single-process gradient of P on the global batch:

    P + (W - 1) * (P - stop_gradient(P))        value P, gradient W * dP
"""

from __future__ import annotations

import torch


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_global(rewards: torch.Tensor, *labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All ranks' ``rewards`` (this rank's slot differentiable, the others constants) and ``labels``.

    Returns (rewards, *labels) concatenated in rank order; without a process group, the inputs.
    """
    rank, size = world()
    if size == 1:
        return (rewards, *labels)
    import torch.distributed as dist

    n = torch.tensor([rewards.shape[0]], device=rewards.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)

    def gather(tensor: torch.Tensor) -> list[torch.Tensor]:
        padded = torch.zeros((longest,), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor.detach()
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded)
        return [part[:length] for part, length in zip(parts, sizes)]

    reward_parts = gather(rewards)
    reward_parts[rank] = rewards  # our own slot keeps its autograd history
    out = [torch.cat(reward_parts)]
    for label in labels:
        out.append(torch.cat(gather(label)))
    return tuple(out)


def scale_grad(value: torch.Tensor, factor: int) -> torch.Tensor:
    """``value`` with its gradient multiplied by ``factor`` (the forward value is unchanged)."""
    if factor == 1:
        return value
    return value + (factor - 1) * (value - value.detach())
