"""Type stubs of the Rust extension (rust/python/src). Arguments are validated and normalised by the
Python layer; values (NaN, ranges, sizes) are checked by the core and raise ValueError. Every call
releases the GIL, stops with the signal handler's exception (KeyboardInterrupt) within about 100 ms of
a signal, and refuses sizes whose buffers would exceed a quarter of physical memory. Integer sizes
that are negative or beyond 64 bits raise ValueError naming the argument."""

from collections.abc import Callable, Sequence
from typing import TypeAlias, TypedDict

import numpy as np
import numpy.typing as npt

_Rewards: TypeAlias = npt.NDArray[np.float64] | npt.NDArray[np.float32]
_Labels: TypeAlias = npt.NDArray[np.int64] | npt.NDArray[np.uint64]
_Bandwidth: TypeAlias = Sequence[float] | str
_Matrix: TypeAlias = npt.NDArray[np.float64]

__all__ = [
    "audit_grid",
    "audit_rewards",
    "check_input",
    "environment_threads",
    "grid_sketch",
    "max_num_threads",
    "median_bandwidth",
    "mmd",
    "num_threads",
    "pairwise_bin_mmd",
    "pairwise_bin_mmd_matrix_vjp",
    "pairwise_bin_mmd_value_and_grad",
    "set_num_threads",
    "set_parallelism",
]

def pairwise_bin_mmd(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    reduction: str,
) -> tuple[float | None, _Matrix | None, list[float]]:
    """(value, None, bandwidths) for a scalar reduction, which needs the occupied bins only;
    (None, (G, M, M) matrix, bandwidths) for "none", refused when the matrix is too large."""

def pairwise_bin_mmd_value_and_grad(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    reduction: str,
) -> tuple[float, None, npt.NDArray[np.float64], list[float]]:
    """(value, None, gradient with respect to every reward, bandwidths used)."""

def pairwise_bin_mmd_matrix_vjp(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    upstream: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Gradient of sum(upstream * matrix), upstream flattened from (G, M, M) and read in place."""

def mmd(x: _Rewards, y: _Rewards, kernel: str, bandwidth: _Bandwidth, estimator: str) -> float:
    """Two-sample MMD^2 (two bins, reduction "sum"), x and y read in place; errors name x or y."""

def check_input(
    rewards: _Rewards, bins: _Labels, groups: _Labels | None, num_bins: int | None, matrix: bool = False
) -> tuple[int, int]:
    """(G, M) of a valid input, else the ValueError any computation on it would raise; with matrix=True
    also the memory check of a full (G, M, M) float64 matrix."""

def median_bandwidth(values: _Rewards) -> float:
    """Median of |r_i - r_j| over pairs i < j (1.0 if it is 0); non-finite values are named rewards[i]."""

def set_num_threads(threads: int) -> int:
    """Worker threads from now on (0: one per core), capped at max_num_threads(); returns the count used."""

def max_num_threads() -> int:
    """The cap on worker threads: 4 per available core."""

def environment_threads() -> tuple[int, str | None]:
    """(threads, warning or None) that CAUSAL_REWARDS_NUM_THREADS asks for (bad or too large values warn)."""

def num_threads() -> int: ...
def set_parallelism(enabled: bool) -> None: ...

# Audits (rust/python/src/audit.rs).
class _AuditResult(TypedDict):
    """What the audit functions return (a dict at runtime)."""

    method: str
    statistic: float
    matrix: _Matrix  # (M, M)
    group_matrices: _Matrix  # (G, M, M)
    counts: npt.NDArray[np.uint64]  # (G, M)
    bandwidths: list[float]
    bandwidth_error: float
    error_bound: float
    permutations: int
    test_statistic: float
    null_statistics: npt.NDArray[np.float64]  # (B,)
    pvalue: float
    pair_tests: str  # "off", "raw" or "maxT": what was computed ("off" without permutations)
    pair_pvalues: _Matrix  # (M, M), NaN when pair tests are off
    pair_pvalues_max_t: _Matrix  # (M, M) Westfall-Young maxT adjusted, NaN unless pair_tests is "maxT"
    grid_points: int

def audit_rewards(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    permutations: int,
    seed: int,
    method: str,
    pair_tests: str = "raw",
    progress: Callable[[int, int], object] | None = None,
) -> _AuditResult:
    """Exact audit ("exact" or "scan") of rewards in memory. ``pair_tests``: "off" (only the global p-value,
    O(n) per permutation for the scan), "raw" (per-pair p-values, O(n M)) or "maxT" (also Westfall-Young
    adjusted). ``progress(finished, planned)`` is called on the calling thread about every 100 ms (an
    exception it raises stops the audit), so no helper thread is needed for a progress bar and Ctrl-C keeps
    working."""

def grid_sketch(
    rewards: npt.NDArray[np.float64],
    cells: _Labels,
    num_cells: int,
    low: float,
    high: float,
    fine_points: int,
    coarse_points: int,
    median_points: int,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """(fine (cells, P), coarse (cells, Pc), pooled (Pm,), counts (cells,)) sketch arrays; add to merge."""

def audit_grid(
    fine: npt.NDArray[np.uint64],
    coarse: npt.NDArray[np.uint64],
    pooled: npt.NDArray[np.uint64],
    counts: npt.NDArray[np.uint64],
    low: float,
    high: float,
    num_groups: int,
    num_bins: int,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    permutations: int,
    seed: int,
    pair_tests: str = "raw",
    progress: Callable[[int, int], object] | None = None,
) -> _AuditResult:
    """Audit ("grid") from summed sketch arrays; ``pair_tests`` and ``progress`` as for ``audit_rewards``."""

