"""Comparisons shared by the audit tests: two reports that must be the same to the last bit."""

from __future__ import annotations

import numpy as np


def same(a, b) -> bool:
    """Equal arrays, NaN where the other is NaN."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return (
        a.shape == b.shape
        and np.array_equal(np.isnan(a), np.isnan(b))
        and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
    )


def assert_same_report(a, b) -> None:
    assert a.method == b.method and a.n == b.n
    assert a.statistic == b.statistic and same(a.mmd, b.mmd)
    assert same(a.pvalue, b.pvalue) and same(a.pvalues, b.pvalues)
    assert np.array_equal(a.counts, b.counts) and a.bandwidth == b.bandwidth
    assert np.array_equal(a.null_statistics, b.null_statistics) and a.error_bound == b.error_bound
    assert a.verdict() == b.verdict() and same(a.histograms, b.histograms)
    assert a.to_dict()["effect"] == b.to_dict()["effect"]
    assert same(a.effect.bin_intervals, b.effect.bin_intervals)
