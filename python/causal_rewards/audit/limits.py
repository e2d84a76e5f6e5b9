"""The audit's size limits, checked before anything of that size is allocated.

    MAX_BINS          1,000 bins in all (the crossed bins of every ``by`` column): the result holds
                      M x M matrices (MMD^2, p-values, adjusted p-values) and every permutation
                      recomputes all M (M - 1) / 2 bin pairs
    MAX_PERMUTATIONS  1,000,000: the smallest p-value is 1 / (1 + B), so this resolves 1e-6
    MAX_GRID_POINTS   2**20 + 1 points of the grid method's fine grid
    MAX_ARRAY_BYTES   2 GiB for one array the audit builds from the sizes: the grid sketch (cells x
                      grid points), the per-condition-value matrices (values x M x M), or maxT's
                      permuted pair statistics (pairs x permutations)
    PAIR_TEST_WORK    2e10: the default computes per-pair p-values when their statistics cost at most
                      this many operations over all permutations, B x rows x M (scan and exact: the
                      O(n M) pass per permutation that the global test does not need) or
                      B x M^2 x coarse points (grid); above it only the global test runs (about 3
                      seconds of one core of a current CPU at the budget) unless asked for

A size above a limit is a ValueError naming the size, the limit and why.
"""

from __future__ import annotations

MAX_BINS = 1000
MAX_PERMUTATIONS = 1_000_000
MAX_GRID_POINTS = (1 << 20) + 1
MAX_ARRAY_BYTES = 1 << 31
PAIR_TEST_WORK = 2 * 10**10
LIMIT_REASON = "the report holds M x M matrices of bin pairs"


def check_total_bins(sizes: list[int], names: list[str]) -> None:
    """The crossed bins of the ``by`` columns (sizes: the bins of each) are at most MAX_BINS."""
    total = 1
    for size in sizes:
        total *= size
    if total > MAX_BINS:
        parts = " x ".join(f"{size} ({name})" for size, name in zip(sizes, names))
        raise ValueError(
            f"the by columns give {total:,} bins = {parts}: above the audit's limit of {MAX_BINS:,} bins "
            f"({LIMIT_REASON}); use fewer bins or fewer columns"
        )


def check_array(what: str, shape: tuple[int, ...], advice: str) -> None:
    """An array of float64 / uint64 of this shape fits in MAX_ARRAY_BYTES."""
    size = 8
    for extent in shape:
        size *= extent
    if size > MAX_ARRAY_BYTES:
        dims = " x ".join(f"{extent:,}" for extent in shape)
        raise ValueError(
            f"{what} would need {dims} values ({size / 2**30:.3g} GiB), above the audit's limit of "
            f"{MAX_ARRAY_BYTES / 2**30:g} GiB; {advice}"
        )
