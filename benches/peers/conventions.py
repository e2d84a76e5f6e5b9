"""How each peer's statistic maps onto this project's, so that "max relative difference" is meaningful.

This project: biased/unbiased MMD^2 with k(a, b) = exp(-(a - b)^2 / (2 s^2)) (rbf) or -|a - b|
(energy; the biased MMD^2 is then the energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'|).

* GeomLoss ``SamplesLoss("gaussian", blur=s)``: kernel exp(-|x - y|^2 / (2 blur^2)), so blur = s,
  and the loss is (1/2) ||alpha - beta||_k^2, i.e. **half** the weighted (biased, with uniform
  weights) MMD^2: MMD^2 = 2 * loss.
* alibi-detect ``MMDDrift`` (pytorch): ``distance`` is the unbiased MMD^2 with the same rbf kernel
  when ``sigma = [s]`` and ``configure_kernel_from_x_ref=False``. Its p-value is
  mean(T <= T_perm) over the permutations (no +1 in numerator and denominator).
* dcor ``energy_distance`` (default V-statistic, exponent 1) is our biased energy MMD^2;
  ``homogeneity.energy_test(...).statistic`` is n m / (n + m) times it.
* hyppo ``Energy(bias=False)`` computes the U-centred distance covariance of the pooled sample with
  the group labels and rescales it by (n+m)^4 / (2 n^2 m^2); expanding the U-centring gives exactly
  ``hyppo_energy_scale(n, m)`` times our unbiased energy MMD^2 (checked in tests/test_bench_peers.py).
* hyppo ``MMD`` returns a distance *correlation* of the distances 1 - K / max K with the label
  kernel, a normalised statistic that is not proportional to MMD^2 across data sets (the
  normalisation depends on the data); only its p-value is comparable.
"""

from __future__ import annotations

import math

GEOMLOSS_GAUSSIAN_TO_MMD2 = 2.0


def hyppo_energy_scale(n: int, m: int) -> float:
    """hyppo ``Energy(bias=False).statistic(x, y)`` divided by the unbiased energy MMD^2 of x and y.

    With N = n + m and U-centred distance covariance Omega (Szekely & Rizzo 2014) of the pooled
    distances a_ij and the label distances 1[group_i != group_j], collecting the coefficients of
    E|X-X'|, E|Y-Y'| and E|X-Y| gives

        Omega * N^4 / (2 n^2 m^2) = (n - 1)(m - 1) N^3 / (n m (N - 1)(N - 2)(N - 3)) * U,
        U = 2 E|X - Y| - E|X - X'| - E|Y - Y'|   (within-sample means over i != j).
    """
    if n < 2 or m < 2 or n + m < 4:
        raise ValueError(f"hyppo's unbiased energy statistic needs n, m >= 2 and n + m >= 4, got n={n}, m={m}")
    total = n + m
    return (n - 1) * (m - 1) * total**3 / (n * m * (total - 1) * (total - 2) * (total - 3))


def dcor_energy_test_scale(n: int, m: int) -> float:
    """dcor ``energy_test(x, y).statistic`` divided by the biased energy MMD^2 (= energy distance)."""
    return n * m / (n + m)


def gaussian_shift_rbf_mmd2(delta: float, bandwidth: float) -> float:
    """Population MMD^2 between N(0, 1) and N(delta, 1) under the rbf kernel of bandwidth s.

    X - X' ~ N(0, 2) and X - Y ~ N(-delta, 2), and E exp(-D^2 / (2 s^2)) for D ~ N(mu, 2) is
    sqrt(s^2 / (s^2 + 2)) exp(-mu^2 / (2 (s^2 + 2))), so

        MMD^2 = 2 sqrt(s^2 / (s^2 + 2)) (1 - exp(-delta^2 / (2 (s^2 + 2)))).
    """
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    s2 = bandwidth * bandwidth
    return 2.0 * math.sqrt(s2 / (s2 + 2.0)) * (1.0 - math.exp(-(delta * delta) / (2.0 * (s2 + 2.0))))


def gaussian_shift_energy_distance(delta: float) -> float:
    """Population energy distance between N(0, 1) and N(delta, 1).

    E|D| for D ~ N(mu, v) is sqrt(2 v / pi) exp(-mu^2 / (2 v)) + mu (1 - 2 Phi(-mu / sqrt v)); with
    v = 2 for both X - Y (mu = delta) and X - X' (mu = 0):  2 E|X - Y| - 2 E|X - X'|.
    """
    def mean_abs(mu: float, var: float) -> float:
        sd = math.sqrt(var)
        return sd * math.sqrt(2.0 / math.pi) * math.exp(-mu * mu / (2.0 * var)) + mu * math.erf(mu / (sd * math.sqrt(2.0)))

    return 2.0 * mean_abs(delta, 2.0) - 2.0 * mean_abs(0.0, 2.0)


def energy_distance_1d(x, y) -> float:
    """The energy distance (biased energy MMD^2) of 1-D samples in O(n log n), an independent reference.

    With S(A, B) = sum over a in A, b in B of |a - b|: for sorted a, S(A, A) = 2 sum_k (2k - n + 1) a_(k)
    (k from 0), and S(A, B) = sum_i [a_i c_i - P_i + (T - P_i) - a_i (m - c_i)] where c_i = #{b < a_i}, P_i
    is the sum of those b and T the sum of all b. Then 2 S(X, Y) / (n m) - S(X, X) / n^2 - S(Y, Y) / m^2.
    Sums are accumulated in float64 (relative accuracy ~1e-12 at 10^6 points).
    """
    import numpy as np

    xs = np.sort(np.asarray(x, dtype=np.float64))
    ys = np.sort(np.asarray(y, dtype=np.float64))
    n, m = len(xs), len(ys)
    if n == 0 or m == 0:
        raise ValueError(f"energy_distance_1d needs non-empty samples, got sizes {n} and {m}")

    def within(sorted_values):
        k = np.arange(len(sorted_values), dtype=np.float64)
        return 2.0 * float(np.dot(2.0 * k - len(sorted_values) + 1.0, sorted_values))

    prefix = np.concatenate([[0.0], np.cumsum(ys)])
    below = np.searchsorted(ys, xs, side="left")
    partial = prefix[below]
    cross = float(np.sum(xs * below - partial + (prefix[-1] - partial) - xs * (m - below)))
    return 2.0 * cross / (n * m) - within(xs) / n**2 - within(ys) / m**2


def relative_difference(value: float, reference: float) -> float:
    """|value - reference| / |reference| (absolute difference when the reference is 0)."""
    scale = abs(reference)
    return abs(value - reference) / scale if scale > 0 else abs(value - reference)
