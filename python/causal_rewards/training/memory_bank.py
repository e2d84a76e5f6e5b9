"""A per-bin queue of recent rewards that joins each batch in the MMD penalty (beyond the paper).

A batch of 32 pairs spreads 64 rewards over 10-30 bins, so each bin holds a handful of samples and the
batch estimate of MMD^2 between bins is noisy (and, for the biased estimator, biased upwards by the
1/n_P diagonal terms). The bank keeps, for every cell (group g, bin m) -- the group is chosen/rejected
under conditional CRM, a single group otherwise -- the ``size`` most recent rewards seen in that cell,
detached. The penalty is then computed on

    rewards = [batch rewards (differentiable)] + [bank rewards (constants)]

so every bin has up to ``size`` more samples while gradients flow only through the current batch, as
in MoCo's queue of keys. The stored rewards come from slightly older parameters; with a queue that is
short compared with the number of steps over which the model changes, that staleness is small.

The bank is part of the training state: ``state_dict`` / ``load_state_dict`` round-trip it exactly, and
the trainers save it in their checkpoints.
"""

from __future__ import annotations

import torch

from ..options import check_integer


class MemoryBank:
    """Ring buffers of shape (num_groups, num_bins, size) with per-cell counts and write heads.

    Args:
        size: capacity of each (group, bin) queue; must be >= 1.
        num_bins: number of bins M.
        num_groups: number of groups G (2 for conditional CRM: chosen, rejected; 1 otherwise).

    Example:
        >>> bank = MemoryBank(size=2, num_bins=2, num_groups=1)
        >>> bank.push(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]))
        >>> bank.contents()[0].tolist()   # the two most recent of bin 0, oldest first
        [2.0, 3.0]
    """

    def __init__(self, size: int, num_bins: int, num_groups: int = 1):
        for name, value, low in (("size", size, 1), ("num_bins", num_bins, 1), ("num_groups", num_groups, 1)):
            check_integer(value, f"MemoryBank {name}", low)
        self.size = size
        self.num_bins = num_bins
        self.num_groups = num_groups
        self.values: torch.Tensor | None = None  # (G, M, K), created on the first push (dtype, device)
        self.count = torch.zeros(num_groups, num_bins, dtype=torch.long)
        self.head = torch.zeros(num_groups, num_bins, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.count.sum())

    @torch.no_grad()
    def push(self, rewards: torch.Tensor, bins: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Appends detached rewards to their cells' queues, in input order, dropping the oldest."""
        rewards = rewards.detach().reshape(-1)
        bins = bins.reshape(-1).long()
        groups = torch.zeros_like(bins) if groups is None else groups.reshape(-1).long()
        if not (rewards.shape == bins.shape == groups.shape):
            raise ValueError(
                f"MemoryBank.push: rewards, bins and groups must have one entry each, got shapes "
                f"{tuple(rewards.shape)}, {tuple(bins.shape)}, {tuple(groups.shape)}"
            )
        if rewards.numel() == 0:
            return
        if bool(((bins < 0) | (bins >= self.num_bins)).any()) or bool(
            ((groups < 0) | (groups >= self.num_groups)).any()
        ):
            raise ValueError(
                f"MemoryBank.push: bins must lie in [0, {self.num_bins}) and groups in [0, {self.num_groups})"
            )
        device = rewards.device
        if self.values is None:
            self.values = torch.zeros(
                self.num_groups, self.num_bins, self.size, dtype=rewards.dtype, device=device
            )
        self._to(device)
        k = self.size
        num_cells = self.num_groups * self.num_bins
        cells = groups.to(device) * self.num_bins + bins.to(device)
        order = torch.argsort(cells, stable=True)  # keep input order within a cell
        sorted_cells = cells[order]
        per_cell = torch.bincount(cells, minlength=num_cells)
        first = torch.cumsum(per_cell, 0) - per_cell  # where each cell starts in the sorted order
        rank = torch.arange(cells.numel(), device=device) - first[sorted_cells]
        skipped = (per_cell - k).clamp(min=0)[sorted_cells]  # only the last k of a cell survive
        keep = rank >= skipped
        kept_cells = sorted_cells[keep]
        head = self.head.reshape(-1)
        slots = (head[kept_cells] + rank[keep] - skipped[keep]) % k
        self.values.reshape(num_cells, k)[kept_cells, slots] = rewards[order][keep].to(self.values.dtype)
        written = per_cell.clamp(max=k)
        self.head = ((head + written) % k).reshape(self.num_groups, self.num_bins)
        self.count = (self.count.reshape(-1) + written).clamp(max=k).reshape(self.num_groups, self.num_bins)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rewards, bins, groups) of every stored entry, ordered by cell then oldest first."""
        if self.values is None:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0), empty, empty
        device = self.values.device
        k = self.size
        count = self.count.reshape(-1, 1)
        head = self.head.reshape(-1, 1)
        j = torch.arange(k, device=device).reshape(1, -1)
        valid = j < count
        slots = (head - count + j) % k  # oldest entry sits `count` slots behind the write head
        flat = self.values.reshape(-1, k).gather(1, slots)
        cells = torch.arange(self.num_groups * self.num_bins, device=device).reshape(-1, 1).expand(-1, k)
        cells = cells[valid]
        return flat[valid], cells % self.num_bins, cells // self.num_bins

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "num_bins": self.num_bins,
            "num_groups": self.num_groups,
            "values": None if self.values is None else self.values.detach().cpu().clone(),
            "count": self.count.cpu().clone(),
            "head": self.head.cpu().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores ``state_dict()``'s output; every entry is checked before anything is replaced."""
        missing = [k for k in ("size", "num_bins", "num_groups", "values", "count", "head") if k not in state]
        if missing:
            raise ValueError(f"memory bank state has no entries {missing}")
        shape = (state["size"], state["num_bins"], state["num_groups"])
        if shape != (self.size, self.num_bins, self.num_groups):
            raise ValueError(
                f"memory bank in the checkpoint has (size, num_bins, num_groups) = {shape}, "
                f"but this trainer has {(self.size, self.num_bins, self.num_groups)}"
            )
        cells = (self.num_groups, self.num_bins)
        values, count, head = state["values"], state["count"], state["head"]
        for name, tensor in (("count", count), ("head", head)):
            if not isinstance(tensor, torch.Tensor) or tensor.shape != cells or tensor.dtype != torch.long:
                raise ValueError(f"memory bank {name} must be an int64 tensor of shape {cells}")
        if bool((count < 0).any() or (count > self.size).any() or (head < 0).any() or (head >= self.size).any()):
            raise ValueError(f"memory bank counts must lie in [0, {self.size}] and heads in [0, {self.size})")
        if values is None:
            if bool(count.any()):
                raise ValueError("memory bank has counts but no values")
        elif (
            not isinstance(values, torch.Tensor)
            or values.shape != (*cells, self.size)
            or not values.is_floating_point()
            or not bool(torch.isfinite(values).all())
        ):
            raise ValueError(f"memory bank values must be a finite float tensor of shape {(*cells, self.size)}")
        device = self.values.device if self.values is not None else torch.device("cpu")
        self.values = None if values is None else values.clone().to(device)
        self.count = count.clone().to(device)
        self.head = head.clone().to(device)

    def _to(self, device: torch.device) -> None:
        if self.values is not None and self.values.device != device:
            self.values = self.values.to(device)
        self.count = self.count.to(device)
        self.head = self.head.to(device)
