"""The probe's statistics on per-pair reward changes d_1 ... d_n (floats, independent pairs).

Both draw from numpy's PCG64 generator seeded with ``seed``, uniform variates u = rng.random(...)
in blocks whose size does not change the stream, so results depend on the seed alone:

- ``bootstrap_interval``: the percentile bootstrap interval of the mean. Replicate b resamples n
  pairs with replacement, indices floor(n * u) from the b-th row of an (resamples, n) array of
  uniforms; the interval is numpy's quantiles (linear interpolation) of the replicate means at
  (1 - level) / 2 and (1 + level) / 2.
- ``sign_flip_pvalue``: the paired sign-flip permutation test of H0: each d_i is symmetric about 0,
  with statistic T = |mean(d)|. When 2^n <= permutations, all 2^n sign vectors are enumerated and
  p = #{s : T_s >= T} / 2^n (exact). Otherwise sign s_bi = +1 where u_bi < 0.5, else -1, and
  p = (1 + #{b : T_b >= T}) / (1 + B). "T_b >= T" allows a relative 1e-12 for rounding.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..options import check_integer

BLOCK_VALUES = 1 << 20  # uniforms drawn per block (only memory depends on it)
RTOL = 1e-12


def _values(values) -> np.ndarray:
    d = np.asarray(values, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("no values: the statistics need at least one pair")
    if not np.all(np.isfinite(d)):
        raise ValueError("values must be finite")
    return d


def _blocks(total: int, n: int):
    rows = max(1, BLOCK_VALUES // max(n, 1))
    for start in range(0, total, rows):
        yield min(rows, total - start)


def bootstrap_means(values, *, resamples: int, seed: int) -> np.ndarray:
    """The ``resamples`` bootstrap replicate means of ``values``."""
    d = _values(values)
    resamples = check_integer(resamples, "bootstrap resamples", 1)
    n = d.size
    rng = np.random.default_rng(seed)
    means = []
    for rows in _blocks(resamples, n):
        index = np.minimum((rng.random((rows, n)) * n).astype(np.int64), n - 1)
        means.append(d[index].mean(axis=1))
    return np.concatenate(means)


def bootstrap_interval(values, *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (see the module docstring)."""
    if not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    means = bootstrap_means(values, resamples=resamples, seed=seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def sign_flip_pvalue(values, *, permutations: int = 10_000, seed: int = 0) -> tuple[float, bool]:
    """(p-value, exact) of the paired sign-flip test of a zero mean (see the module docstring)."""
    d = _values(values)
    permutations = check_integer(permutations, "permutations", 1)
    n = d.size
    observed = abs(d.sum() / n)
    threshold = observed - RTOL * observed
    if n < 63 and (1 << n) <= permutations:
        codes = np.arange(1 << n, dtype=np.int64)[:, None]
        signs = np.where((codes >> np.arange(n)) & 1, -1.0, 1.0)
        statistics = np.abs(signs @ d / n)
        return float(np.count_nonzero(statistics >= threshold) / (1 << n)), True
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _blocks(permutations, n):
        signs = np.where(rng.random((rows, n)) < 0.5, 1.0, -1.0)
        hits += int(np.count_nonzero(np.abs(signs @ d / n) >= threshold))
    return (1 + hits) / (1 + permutations), False
