"""Per-bin mean and standard deviation of the rewards that do not depend on how the rows are split
into chunks, files or Ray partitions, nor on the order in which the pieces are merged.

Float sums do: (a + b) + c is not a + (b + c). Here every reward r is first scaled by a power of two
to y = r / 2^E in (-1, 1), E fixed by pass one's range, and y and y^2 are each cut into FOLDS signed
integer digits of FOLD_BITS bits, y = sum_k d_k 2^(-k FOLD_BITS) + (a remainder below 2^-54 that is
dropped). The digits' sums per bin are integers held exactly in float64 (|d_k| <= 2^FOLD_BITS, so up
to 2^(53 - FOLD_BITS) = 3.4e10 rows per bin), so adding them is exact in any order. The mean and the
variance are then computed once, from the exact sums, in rational arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

FOLD_BITS = 18
FOLDS = 3


class BinMoments:
    """Counts and digit sums of y and y^2 per bin; ``merge`` adds them (exactly)."""

    def __init__(self, num_bins: int, low: float, high: float):
        # frexp: max |r| = f 2^E with f < 1, so |y| < 1 (E = 0 when every reward is 0)
        self.exponent = math.frexp(max(abs(low), abs(high)))[1]
        self.counts = np.zeros(num_bins, dtype=np.int64)
        self.digits = np.zeros((2, FOLDS, num_bins))  # [y or y^2, fold, bin]

    def add(self, rewards: np.ndarray, labels: np.ndarray) -> BinMoments:
        m = self.counts.shape[0]
        y = np.ldexp(rewards, -self.exponent)
        for power, values in enumerate((y, y * y)):
            rest = values
            for k in range(FOLDS):
                scale = float(2 ** (FOLD_BITS * (k + 1)))
                digit = np.rint(rest * scale)  # exact: scaling by a power of two
                rest = rest - digit / scale  # exact: digit / scale is the nearest multiple
                self.digits[power, k] += np.bincount(labels, weights=digit, minlength=m)
        self.counts += np.bincount(labels, minlength=m)
        return self

    def merge(self, other: BinMoments) -> BinMoments:
        self.counts += other.counts
        self.digits += other.digits
        return self

    def _exact(self, power: int, b: int) -> Fraction:
        """Sum over bin b's rows of the truncated y (power 0) or y^2 (power 1)."""
        return sum(
            (Fraction(int(self.digits[power, k, b]), 2 ** (FOLD_BITS * (k + 1))) for k in range(FOLDS)),
            Fraction(0),
        )

    def means_stds(self) -> tuple[np.ndarray, np.ndarray]:
        """(means, population standard deviations) per bin; NaN for an empty bin."""
        m = self.counts.shape[0]
        means, stds = np.full(m, np.nan), np.full(m, np.nan)
        for b in range(m):
            means[b], stds[b] = self._mean_std(int(self.counts[b]), self._exact(0, b), self._exact(1, b))
        return means, stds

    def pooled(self) -> tuple[float, float]:
        """(mean, population standard deviation) of all rows together, from the same exact sums."""
        bins = range(self.counts.shape[0])
        total = int(self.counts.sum())
        sums = [sum((self._exact(power, b) for b in bins), Fraction(0)) for power in (0, 1)]
        return self._mean_std(total, *sums)

    def _mean_std(self, n: int, sum_y: Fraction, sum_y2: Fraction) -> tuple[float, float]:
        """The mean and population standard deviation of n rows from their exact sums of y and y^2
        (NaN for no row), in the rewards' units."""
        if not n:
            return math.nan, math.nan
        mean = sum_y / n
        variance = max(sum_y2 / n - mean * mean, Fraction(0))
        return math.ldexp(float(mean), self.exponent), math.ldexp(math.sqrt(float(variance)), self.exponent)
