"""How the torch and Triton paths evaluate the kernels: in units of the smallest bandwidth.

The rewards are scaled once, in float64, before any difference is squared: u = r * alpha with
alpha = 1 / s for the smallest bandwidth s (the energy kernel, which has none, divides by a power of
two c >= max |r| instead, exactly). With rho_t = s / s_t <= 1 and d = u_a - u_b:

    rbf        k = mean_t exp(-(rho_t d)^2 / 2)       laplacian  k = mean_t exp(-rho_t |d|)
    imq        k = mean_t (1 + (rho_t d)^2)^(-1/2)   energy     k = -|d|, and the statistic times c

``base2=True`` (the Triton kernels) folds log2(e) into alpha, so that the exponentials are exp2:
rbf exp2(-(rho_t d)^2) (alpha = sqrt(log2(e) / 2) / s), laplacian exp2(-rho_t |d|) (log2(e) / s).

So a pair far apart in units of s has k = 0 and a zero slope (never inf - inf or 0 * inf), a
bandwidth of 1e-160 is as good as one of 1, and float32 is used while |u| stays well inside its range;
beyond it float64, beyond float64's a ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG2E = 1.0 / math.log(2.0)
_BASE2 = {"rbf": math.sqrt(LOG2E / 2.0), "laplacian": LOG2E, "imq": 1.0}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def kernel_at_zero(kernel: str) -> float:
    """k(0), in the units above: 0 for energy, 1 for the others."""
    return 0.0 if kernel == "energy" else 1.0


def headroom(dtype: torch.dtype) -> float:
    """The largest |u| a dtype is used for: differences of padded values stay finite."""
    return torch.finfo(dtype).max / 16.0


@dataclass(frozen=True)
class Scaling:
    """u = r * alpha; the statistic of r is value_scale times that of u (gradient: times alpha too)."""

    alpha: float
    ratios: tuple[float, ...]  # rho_t = s / s_t, the first is 1
    value_scale: float

    @classmethod
    def of(cls, kernel: str, bandwidths, max_abs: float, base2: bool = False) -> Scaling:
        if kernel == "energy":
            c = math.ldexp(1.0, math.frexp(max_abs)[1]) if max_abs > 0 else 1.0
            return cls(alpha=1.0 / c, ratios=(1.0,), value_scale=c)
        smallest = min(bandwidths)
        ratios = tuple(smallest / s for s in bandwidths)
        return cls(alpha=(_BASE2[kernel] if base2 else 1.0) / smallest, ratios=ratios, value_scale=1.0)

    @property
    def grad_scale(self) -> float:
        return self.value_scale * self.alpha

    def dtype_for(self, dtype: torch.dtype, max_abs: float) -> torch.dtype:
        """The compute dtype for rewards of ``dtype`` up to ``max_abs``: float32 promoted to float64
        where the scaled rewards would leave its range; ValueError beyond float64's."""
        if not math.isfinite(self.alpha):
            raise ValueError("the bandwidth is too small to divide by: use a bandwidth of at least 1e-300")
        largest = max_abs * self.alpha
        compute = compute_dtype(dtype)
        if compute == torch.float32 and not largest <= headroom(torch.float32):
            compute = torch.float64
        if not largest <= headroom(torch.float64):
            raise ValueError(
                f"rewards up to {max_abs:g} are {largest:g} bandwidths apart: beyond what float64 can "
                f"represent; rescale the rewards or use a larger bandwidth"
            )
        return compute

    def apply(self, rewards: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
        """u = r * alpha in ``compute`` (scaled in float64 first); differentiable."""
        return (rewards.to(torch.float64) * self.alpha).to(compute)


def narrow(values: torch.Tensor, dtype: torch.dtype, bound: float = math.inf) -> torch.Tensor:
    """``values`` in ``dtype``; a ValueError where a finite value does not fit, instead of inf.

    ``bound``: a known bound on |values| (skips the check, and its device sync, when it fits).
    """
    out = values.to(dtype)
    if out.dtype == values.dtype or not dtype.is_floating_point or bound <= torch.finfo(dtype).max:
        return out
    overflow = torch.isinf(out) & torch.isfinite(values)
    if bool(overflow.any()):
        largest = float(values.detach()[overflow].abs().max())
        raise ValueError(
            f"the result {largest:g} does not fit in {str(dtype).removeprefix('torch.')}: "
            f"pass float64 rewards, or rescale them"
        )
    return out
