"""Suite 3: estimator variants of this project, exact vs linear-time (vs the audit's sketch and scans).

Two measurements on the shifted example x ~ N(0, 1), y ~ N(SHIFT, 1), n each, rbf bandwidth 1:

* ``statistic``: time of one statistic against n, its relative error against the exact biased
  statistic of the same sample (where that ran) and against the population MMD^2
  (``conventions.gaussian_shift_rbf_mmd2``);
* ``power``: the rejection rate at level 0.05 of a B-permutation test built on each estimator, over R
  independent data sets, against the median time of one test.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

SHIFT = 0.3
BANDWIDTH = 1.0
LEVEL = 0.05


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), rng.standard_normal(n) + SHIFT


def _crm(estimator: str, kernel: str = "rbf"):
    def statistic(x, y):
        import causal_rewards as cr

        return cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator)

    return statistic


# key -> (table label, statistic(x, y) -> float, kernel of the statistic, cost in n)
METHODS = {
    "exact_biased": ("exact, biased (Rust, all pairs)", _crm("biased"), "rbf", "O(n^2)"),
    "exact_unbiased": ("exact, unbiased (Rust, all pairs)", _crm("unbiased"), "rbf", "O(n^2)"),
    "linear": ("linear-time (Gretton 2012, Rust)", _crm("linear"), "rbf", "O(n)"),
}


def run_statistic_case(key: str, n: int, seed: int, budget: float, exact_limit: int) -> dict:
    """Time one statistic; relative error against exact (n <= exact_limit) and the population value."""
    from peers.conventions import gaussian_shift_energy_distance, gaussian_shift_rbf_mmd2, relative_difference
    from peers.isolate import measure

    _, statistic, kernel, _ = METHODS[key]
    statistic(*make_data(16, seed))  # first-call costs
    x, y = make_data(n, seed)
    result = measure(lambda: statistic(x, y), budget=budget, max_repeats=5)
    value = float(result.pop("output"))
    population = gaussian_shift_rbf_mmd2(SHIFT, BANDWIDTH) if kernel == "rbf" else gaussian_shift_energy_distance(SHIFT)
    result.update(statistic=value, population=population, rel_err_population=relative_difference(value, population))
    if n <= exact_limit:
        exact = float(_crm("biased", kernel)(x, y))
        result.update(exact=exact, rel_err_exact=relative_difference(value, exact))
    return result


def permutation_test(statistic, x, y, permutations: int, rng: np.random.Generator) -> float:
    """p = (1 + #{T_perm >= T}) / (1 + B) for the statistic on the pooled sample split at n."""
    observed = statistic(x, y)
    pooled = np.concatenate([x, y])
    n = len(x)
    exceed = 0
    for _ in range(permutations):
        shuffled = pooled[rng.permutation(len(pooled))]
        exceed += statistic(shuffled[:n], shuffled[n:]) >= observed
    return (1 + exceed) / (1 + permutations)


def run_power_case(key: str, n: int, repetitions: int, permutations: int, seed: int) -> dict:
    """Rejection rate at LEVEL over ``repetitions`` data sets, and the median time of one test."""
    _, statistic, _, _ = METHODS[key]
    statistic(*make_data(16, seed))  # first-call costs
    rejections, times = 0, []
    for rep in range(repetitions):
        x, y = make_data(n, seed + 1000 * rep)
        rng = np.random.default_rng(seed + rep)
        start = time.perf_counter()
        pvalue = permutation_test(statistic, x, y, permutations, rng)
        times.append(time.perf_counter() - start)
        rejections += pvalue <= LEVEL
    return {"time_s": statistics.median(times), "repeats": repetitions, "power": rejections / repetitions}
