"""Type stubs of the Rust extension (rust/python/src/lib.rs). Arguments are validated and
normalised by the Python layer; values (NaN, ranges) are checked here and raise ValueError."""

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

_Rewards: TypeAlias = npt.NDArray[np.float64] | npt.NDArray[np.float32]
_Labels: TypeAlias = npt.NDArray[np.int64]
_Bandwidth: TypeAlias = Sequence[float] | str

def pairwise_bin_mmd(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    reduction: str,
) -> tuple[float | None, npt.NDArray[np.float64], list[float]]:
    """(reduced value or None for "none", (G, M, M) matrix, bandwidths used)."""

def pairwise_bin_mmd_value_and_grad(
    rewards: _Rewards,
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    reduction: str,
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64], list[float]]:
    """(value, (G, M, M) matrix, gradient with respect to every reward, bandwidths used)."""

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
    """Gradient of sum(upstream * matrix), upstream flattened from (G, M, M)."""

def median_bandwidth(values: npt.NDArray[np.float64]) -> float: ...
def set_num_threads(threads: int) -> None: ...
def num_threads() -> int: ...
def set_parallelism(enabled: bool) -> None: ...

# Audits (rust/python/src/audit.rs); each returns a dict with method, statistic, matrix (M, M),
# group_matrices (G, M, M), counts (G, M), bandwidths, bandwidth_error, error_bound, permutations,
# test_statistic, null_statistics, pvalue, pair_pvalues (M, M), grid_points.
def audit_rewards(
    rewards: npt.NDArray[np.float64],
    bins: _Labels,
    groups: _Labels | None,
    num_bins: int,
    kernel: str,
    bandwidth: _Bandwidth,
    estimator: str,
    permutations: int,
    seed: int,
    method: str,
) -> dict:
    """Exact audit ("exact" or "scan") of rewards in memory."""

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
) -> dict:
    """Audit ("grid") from summed sketch arrays."""

def audit_progress() -> tuple[int, int]:
    """(finished, planned) permutations of the audit running now (shared by concurrent audits)."""
