"""One call of the torch or Triton path: its data on the device, checked, with the sizes and the
bandwidths resolved, and the rewards' cells (group * M + bin), counts and order by cell.

The values of the data are the Rust core's to check. Here they are only tested on the device, in one
small summary (one device-to-host transfer); when that shows something wrong, the core's own
validation runs on CPU copies and raises its message, so that every backend refuses bad input in the
same words.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from .. import _core
from ..options import MmdOptions
from .scaling import Scaling


@dataclass(frozen=True)
class Problem:
    """The checked input of one pairwise-bin MMD on the torch or Triton path."""

    rewards: torch.Tensor  # 1-D floating point, on its device
    bins: torch.Tensor  # int64, on the rewards' device
    groups: torch.Tensor | None  # int64 or None (one group)
    num_groups: int
    num_bins: int
    kernel: str
    bandwidths: tuple[float, ...]  # resolved: the median heuristic is a number here
    estimator: str
    max_abs: float  # max |reward|

    @property
    def unbiased(self) -> bool:
        return self.estimator == "unbiased"

    @functools.cached_property
    def bounds(self) -> tuple[float, float]:
        """Bounds on |value| (or any matrix entry) and on |d value / d r_i|, for ``scaling.narrow``.

        Per pair |MMD^2| <= 4 max |k| (<= 8 max |r| for energy); summed over at most M^2 pairs.
        The gradient in units of the scaled rewards is at most about 4 M.
        """
        scale = Scaling.of(self.kernel, self.bandwidths, self.max_abs)
        pairs = float(self.num_bins) ** 2
        return 16.0 * pairs * scale.value_scale, 16.0 * pairs * abs(scale.grad_scale)

    @property
    def num_cells(self) -> int:
        return self.num_groups * self.num_bins

    @functools.cached_property
    def cells(self) -> torch.Tensor:
        """int64 group * num_bins + bin."""
        if self.num_cells >= 2**62:
            raise ValueError(
                f"{self.num_groups} groups of {self.num_bins} bins are more cells than can be indexed"
            )
        return cell_ids(self.bins, self.groups, self.num_bins)

    @functools.cached_property
    def counts(self) -> torch.Tensor:
        """(G, M) int64 number of rewards per cell."""
        require_memory(8 * self.num_cells, f"counting {self.num_groups} x {self.num_bins} cells", self.rewards.device)
        flat = torch.bincount(self.cells, minlength=self.num_cells)
        return flat.reshape(self.num_groups, self.num_bins)

    def compact(self) -> tuple[Problem, torch.Tensor, torch.Tensor | None]:
        """The same problem over the occupied bins and groups only, in order (empty ones have no
        computable pair), and the labels they had."""
        bin_labels, bins = torch.unique(self.bins, return_inverse=True)
        group_labels, groups = (None, None) if self.groups is None else torch.unique(self.groups, return_inverse=True)
        small = dataclasses.replace(
            self,
            bins=bins,
            groups=groups,
            num_bins=bin_labels.shape[0],
            num_groups=1 if group_labels is None else group_labels.shape[0],
        )
        return small, bin_labels, group_labels

    @functools.cached_property
    def by_cell(self) -> CellOrder:
        return CellOrder.of(self.cells, self.counts)


@dataclass(frozen=True)
class CellOrder:
    """The rewards sorted by cell, input order kept within a cell (the linear estimator's samples)."""

    order: torch.Tensor  # sorted position -> input index
    starts: torch.Tensor  # (G * M,) int64 first sorted position of each cell
    counts: torch.Tensor  # (G * M,) int64

    @classmethod
    def of(cls, cells: torch.Tensor, counts: torch.Tensor) -> CellOrder:
        flat = counts.reshape(-1)
        order = torch.sort(cells, stable=True).indices
        return cls(order=order, starts=torch.cumsum(flat, 0) - flat, counts=flat)

    def unsort(self, sorted_values: torch.Tensor) -> torch.Tensor:
        """Values given in sorted order, back in input order."""
        out = torch.empty_like(sorted_values)
        out[self.order] = sorted_values
        return out


def cell_ids(bins: torch.Tensor, groups: torch.Tensor | None, num_bins: int) -> torch.Tensor:
    cells = bins.to(torch.int64)
    return cells if groups is None else groups.to(torch.int64) * num_bins + cells


def prepare(rewards, bins, groups, num_bins: int | None, options: MmdOptions) -> Problem:
    """The checked problem, or the core's ValueError for values it refuses."""
    if rewards.device.type == "meta":
        raise ValueError("rewards is on the meta device, which holds no values: the statistic needs real data")
    if bins.shape[0] != rewards.shape[0] or (groups is not None and groups.shape[0] != rewards.shape[0]):
        raise_core_error(rewards, bins, groups, num_bins)
    summary = _summary(rewards, bins, groups)
    finite, bins_low, bins_high, groups_low, groups_high = summary[:5]
    max_abs = float(np.int64(summary[5]).view(np.float64))
    bad = not finite or bins_low < 0 or groups_low < 0 or (num_bins is not None and bins_high >= num_bins)
    if bad:
        raise_core_error(rewards, bins, groups, num_bins)
    resolved_bins = bins_high + 1 if num_bins is None else num_bins
    num_groups = groups_high + 1 if groups is not None else 1
    return Problem(
        rewards=rewards,
        bins=bins.to(torch.int64),
        groups=None if groups is None else groups.to(torch.int64),
        num_groups=num_groups,
        num_bins=resolved_bins,
        kernel=options.kernel,
        bandwidths=tuple(resolve_bandwidths(rewards, options)),
        estimator=options.estimator,
        max_abs=max_abs,
    )


def _summary(rewards, bins, groups) -> list[int]:
    """[all finite, min bin, max bin, min group, max group, max |r| as float64 bits]: one transfer."""
    zero = bins.new_zeros((), dtype=torch.int64)
    max_abs = rewards.detach().abs().max().to(torch.float64)
    parts = [
        torch.isfinite(rewards).all().to(torch.int64),
        bins.min().to(torch.int64),
        bins.max().to(torch.int64),
        zero if groups is None else groups.min().to(torch.int64),
        zero if groups is None else groups.max().to(torch.int64),
        max_abs.reshape(1).view(torch.int64)[0],
    ]
    return torch.stack(parts).cpu().tolist()


def raise_core_error(rewards, bins, groups, num_bins) -> None:
    """Raise the core's own error for this input, validated on CPU copies."""
    r = rewards.detach().to("cpu")
    if r.dtype not in (torch.float32, torch.float64):
        r = r.to(torch.float64)
    as_labels = lambda labels: None if labels is None else labels.detach().to("cpu", torch.int64).numpy()
    args = (r.numpy(), as_labels(bins), as_labels(groups), num_bins)
    _core.check_input(*args)
    raise AssertionError("the device check found bad input that the core's validation accepts")


def resolve_bandwidths(rewards: torch.Tensor, options: MmdOptions) -> list[float]:
    """The bandwidths as numbers: "median" is the median |r_i - r_j| over all pairs (a constant)."""
    if options.median:
        return [_core.median_bandwidth(rewards.detach().to("cpu", torch.float64).numpy())]
    return options.bandwidths


def available_bytes(device: torch.device) -> int:
    """Memory that an allocation on ``device`` can have now: free device memory plus what torch's
    caching allocator holds unused (CUDA), the kernel's MemAvailable (CPU)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def require_memory(nbytes: float, what: str, device: torch.device) -> None:
    """A ValueError naming the size when ``nbytes`` is more than ``device`` has available."""
    available = available_bytes(device)
    if nbytes > available:
        raise ValueError(
            f"{what} would need {nbytes / 2**30:.3g} GiB, more than the {available / 2**30:.3g} GiB available "
            f"on {device}"
        )
