"""Suite 3: estimator variants of this project, exact vs linear-time (vs the audit's sketch and scans).

Two measurements on a shifted example x ~ N(0, 1), y ~ N(shift, 1), n each, bandwidth 1:

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

#: shift of the power study (small: the tests need hundreds of samples to see it)
SHIFT = 0.3
#: shift of the statistic study (larger: relative errors are then not dominated by sampling noise)
STATISTIC_SHIFT = 1.0
BANDWIDTH = 1.0
LEVEL = 0.05


def make_data(n: int, seed: int, shift: float = SHIFT) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), rng.standard_normal(n) + shift


def _crm(estimator: str, kernel: str = "rbf"):
    def statistic(x, y):
        import causal_rewards as cr

        return cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator)

    return statistic


def _audit_statistic(kernel: str, method: str):
    def statistic(x, y):
        from peers.twosample import audit_test

        return audit_test(x, y, kernel, method, 0, 0)[0]

    return statistic


def _audit_pvalue(kernel: str, method: str):
    def test(x, y, permutations, seed):
        from peers.twosample import audit_test

        return audit_test(x, y, kernel, method, permutations, seed)[1]

    return test


# key -> (table label, statistic(x, y) -> float, kernel, cost, test(x, y, B, seed) -> p-value or None).
# A None test means: a B-permutation loop in Python around the statistic (``permutation_test``).
METHODS = {
    "exact_biased": ("rbf exact, biased (mmd)", _crm("biased"), "rbf", "O(n^2)", None),
    "exact_unbiased": ("rbf exact, unbiased (mmd)", _crm("unbiased"), "rbf", "O(n^2)", None),
    "linear": ("rbf linear-time (mmd, Gretton 2012)", _crm("linear"), "rbf", "O(n)", None),
    "audit_exact": ("rbf exact (audit, permutations in Rust)", _audit_statistic("rbf", "exact"), "rbf", "O(n^2)",
                    _audit_pvalue("rbf", "exact")),
    "audit_grid": ("rbf grid sketch (audit)", _audit_statistic("rbf", "grid"), "rbf", "O(n + P log P)",
                   _audit_pvalue("rbf", "grid")),
    "energy_exact": ("energy exact, all pairs (mmd)", _crm("biased", "energy"), "energy", "O(n^2)", None),
    "audit_scan": ("energy exact scan (audit)", _audit_statistic("energy", "scan"), "energy", "O(n log n)",
                   _audit_pvalue("energy", "scan")),
}
#: rows whose statistic is the reference of the others' relative error, per kernel
EXACT_REFERENCE = {"rbf": "exact_biased", "energy": "energy_exact"}


def run_statistic_case(key: str, n: int, seed: int, budget: float, exact_limit: int) -> dict:
    """Time one statistic; relative error against exact (n <= exact_limit) and the population value."""
    from peers.conventions import (
        energy_distance_1d,
        gaussian_shift_energy_distance,
        gaussian_shift_rbf_mmd2,
        relative_difference,
    )
    from peers.isolate import measure

    _, statistic, kernel, _, _ = METHODS[key]
    statistic(*make_data(16, seed, STATISTIC_SHIFT))  # first-call costs
    x, y = make_data(n, seed, STATISTIC_SHIFT)
    result = measure(lambda: statistic(x, y), budget=budget, max_repeats=5)
    value = float(result.pop("output"))
    if kernel == "rbf":
        population = gaussian_shift_rbf_mmd2(STATISTIC_SHIFT, BANDWIDTH)
        exact = float(_crm("biased")(x, y)) if n <= exact_limit else None
    else:
        population = gaussian_shift_energy_distance(STATISTIC_SHIFT)
        exact = energy_distance_1d(x, y)  # O(n log n), independent of the package
    result.update(statistic=value, population=population, rel_err_population=relative_difference(value, population))
    if exact is not None:
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
    _, statistic, _, _, test = METHODS[key]
    if test is None:
        def test(x, y, b, s):
            return permutation_test(statistic, x, y, b, np.random.default_rng(s))

    test(*make_data(16, seed), 3, seed)  # first-call costs
    rejections, times = 0, []
    for rep in range(repetitions):
        x, y = make_data(n, seed + 1000 * rep)
        start = time.perf_counter()
        pvalue = test(x, y, permutations, seed + rep)
        times.append(time.perf_counter() - start)
        rejections += pvalue <= LEVEL
    return {"time_s": statistics.median(times), "repeats": repetitions, "power": rejections / repetitions}
