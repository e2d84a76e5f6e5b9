"""Suite 2: two-sample tests with permutations (and the bare statistics), as far in n as each goes.

Data: x ~ N(0, 1) and y ~ N(0.1, 1), n each, 1-D. Every test uses B permutations (the same B for
all) and, for rbf, bandwidth 1 (alibi ``sigma=[1]``, hyppo ``gamma = 1 / (2 s^2) = 0.5``).
Each step returns (statistic in this project's convention, p-value or None); ``reference`` is this
project's statistic in the same convention, computed untimed in the same child.
"""

from __future__ import annotations

import numpy as np

SHIFT = 0.1
BANDWIDTH = 1.0
#: beyond this n per sample the all-pairs reference statistic (O(n^2)) is not computed
REFERENCE_MAX_N = 20_000


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), rng.standard_normal(n) + SHIFT


def permutation_pvalue(observed: float, permuted: list[float]) -> float:
    """p = (1 + #{T_perm >= T}) / (1 + B), the design's convention (valid at any B)."""
    return (1 + sum(t >= observed for t in permuted)) / (1 + len(permuted))


def _crm_permutation_test(kernel: str, estimator: str):
    def factory(x, y, permutations, seed):
        import causal_rewards as cr

        pooled = np.concatenate([x, y])
        n = len(x)

        def step():
            rng = np.random.default_rng(seed)
            observed = cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator)
            permuted = []
            for _ in range(permutations):
                shuffled = pooled[rng.permutation(len(pooled))]
                permuted.append(cr.mmd(shuffled[:n], shuffled[n:], kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator))
            return observed, permutation_pvalue(observed, permuted)

        return step

    return factory


def _crm_statistic(kernel: str, estimator: str):
    def factory(x, y, permutations, seed):
        import causal_rewards as cr

        return lambda: (cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator), None)

    return factory


def audit_test(x, y, kernel: str, method: str, permutations: int, seed: int) -> tuple[float, float]:
    """``causal_rewards.audit`` on the two samples as two categorical bins: (statistic, p-value).

    The audit's permutation test runs inside Rust: "exact" recomputes the all-pairs statistic per
    permutation, "scan" (energy, laplacian) is exact in O(n log n) per permutation from one sort, and
    "grid" (rbf) bins the rewards onto a fine grid once and permutes on a coarse grid (its report
    carries an error bound). permutations=0 gives the statistic alone (p-value NaN).
    """
    import causal_rewards as cr

    data = {"reward": np.concatenate([x, y]), "sample": np.repeat(np.array([0, 1]), [len(x), len(y)])}
    report = cr.audit(data, reward="reward", by="sample", binning="categorical", kernel=kernel, bandwidth=BANDWIDTH,
                      permutations=permutations, seed=seed, method=method, progress=False)
    return float(report.statistic), (float(report.pvalue) if permutations else None)


def _audit(kernel: str, method: str, with_test: bool = True):
    def factory(x, y, permutations, seed):
        return lambda: audit_test(x, y, kernel, method, permutations if with_test else 0, seed)

    return factory


def alibi_mmd_drift(x, y, permutations, seed):
    """alibi-detect MMDDrift, pytorch backend, fixed sigma. The detector is built once from x (untimed:
    its constructor scripts the kernel with TorchScript, seconds per call); a step is one predict(y):
    the (2n, 2n) kernel matrix, then B permutations of it."""
    import torch
    from alibi_detect.cd import MMDDrift

    detector = MMDDrift(
        x[:, None],
        backend="pytorch",
        p_val=0.05,
        n_permutations=permutations,
        sigma=np.array([BANDWIDTH]),
        configure_kernel_from_x_ref=False,
        device="cpu",
    )

    def step():
        torch.manual_seed(seed)
        out = detector.predict(y[:, None])["data"]
        return float(out["distance"]), float(out["p_val"])

    return step


def hyppo_mmd(x, y, permutations, seed):
    """hyppo.ksample.MMD, gaussian kernel with gamma = 1 / (2 s^2), permutation test (auto=False)."""
    from hyppo.ksample import MMD

    def step():
        _, pvalue = MMD(compute_kernel="gaussian", gamma=0.5 / BANDWIDTH**2).test(
            x[:, None], y[:, None], reps=permutations, workers=1, auto=False, random_state=seed
        )
        return None, float(pvalue)  # a normalised distance correlation, not MMD^2: see conventions

    return step


def hyppo_energy(x, y, permutations, seed):
    """hyppo.ksample.Energy (unbiased), permutation test (auto=False), statistic rescaled to ours."""
    from hyppo.ksample import Energy

    from peers.conventions import hyppo_energy_scale

    def step():
        stat, pvalue = Energy(bias=False).test(
            x[:, None], y[:, None], reps=permutations, workers=1, auto=False, random_state=seed
        )
        return float(stat) / hyppo_energy_scale(len(x), len(y)), float(pvalue)

    return step


def dcor_energy_test(x, y, permutations, seed):
    import dcor

    from peers.conventions import dcor_energy_test_scale

    def step():
        result = dcor.homogeneity.energy_test(x, y, num_resamples=permutations, random_state=seed)
        return float(result.statistic) / dcor_energy_test_scale(len(x), len(y)), float(result.pvalue)

    return step


def dcor_energy_distance(x, y, permutations, seed):
    import dcor

    return lambda: (float(dcor.energy_distance(x, y)), None)


# key -> (table label, family, factory, reference (kernel, estimator) or None, group, interpreter).
# Time ratios are taken against the fastest of this project's rows of the same group at the same n.
# interpreter "alibi": the method runs in alibi-detect's own environment (compare.py --alibi-python).
METHODS = {
    "audit_rbf_grid": ("this project: audit rbf, grid sketch", "ours", _audit("rbf", "grid"),
                       ("rbf", "biased"), "rbf", "main"),
    "audit_rbf_exact": ("this project: audit rbf, exact", "ours", _audit("rbf", "exact"),
                        ("rbf", "biased"), "rbf", "main"),
    "crm_rbf_perm": ("this project: mmd rbf + Python permutation loop", "ours", _crm_permutation_test("rbf", "biased"),
                     ("rbf", "biased"), "rbf", "main"),
    "alibi_mmd": ("alibi-detect MMDDrift (pytorch, rbf, unbiased)", "peer", alibi_mmd_drift,
                  ("rbf", "unbiased"), "rbf", "alibi"),
    "hyppo_mmd": ("hyppo MMD (gaussian)", "peer", hyppo_mmd, None, "rbf", "main"),
    "audit_energy_scan": ("this project: audit energy, O(n log n) scan", "ours", _audit("energy", "scan"),
                          ("energy", "biased"), "energy", "main"),
    "crm_energy_perm": ("this project: mmd energy + Python permutation loop", "ours",
                        _crm_permutation_test("energy", "biased"), ("energy", "biased"), "energy", "main"),
    "hyppo_energy": ("hyppo Energy (unbiased)", "peer", hyppo_energy,
                     ("energy", "unbiased"), "energy", "main"),
    "dcor_energy_test": ("dcor energy_test", "peer", dcor_energy_test,
                         ("energy", "biased"), "energy", "main"),
    "audit_energy_stat": ("this project: audit energy scan, statistic only", "ours",
                          _audit("energy", "scan", with_test=False), ("energy", "biased"), "energy statistic", "main"),
    "crm_energy_stat": ("this project: mmd energy (all pairs), statistic only", "ours",
                        _crm_statistic("energy", "biased"), ("energy", "biased"), "energy statistic", "main"),
    "dcor_energy_distance": ("dcor energy_distance, statistic only", "peer", dcor_energy_distance,
                             ("energy", "biased"), "energy statistic", "main"),
}


def run_case(key: str, n: int, permutations: int, seed: int, budget: float) -> dict:
    """In the forked child: build the data, time one full test, compare the statistic with ours."""
    from peers.conventions import energy_distance_1d, relative_difference
    from peers.isolate import measure

    _, _, factory, reference, _, _ = METHODS[key]
    small_x, small_y = make_data(32, seed)
    factory(small_x, small_y, 2, seed)()  # first-call costs (imports, numba JIT, op registration)
    x, y = make_data(n, seed)
    result = measure(factory(x, y, permutations, seed), budget=budget, max_repeats=3)
    statistic, pvalue = result.pop("output")
    result.update(statistic=statistic, pvalue=pvalue, reference=None, rel_diff=None)
    if reference is not None and statistic is not None:
        kernel, estimator = reference
        if kernel == "energy" and estimator == "biased":
            ref = energy_distance_1d(x, y)  # O(n log n): checks the largest sizes too
        elif n <= REFERENCE_MAX_N:
            import causal_rewards as cr

            ref = float(cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator))
        else:
            return result  # an all-pairs reference would take longer than the case
        result.update(reference=ref, rel_diff=relative_difference(float(statistic), ref))
    return result
