"""Type stubs of the Rust extension (rust/python/src/lib.rs). Arguments are validated and
normalised by the Python layer; values (NaN, ranges) are checked here and raise ValueError."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_Rewards = npt.NDArray[np.float64] | npt.NDArray[np.float32]
_Labels = npt.NDArray[np.int64]
_Bandwidth = Sequence[float] | str

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
