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


# key -> (table label, family, factory, reference (kernel, estimator) or None, comparator key, interpreter)
# interpreter "alibi": the method runs in alibi-detect's own environment (see compare.py --alibi-python).
METHODS = {
    "crm_rbf_perm": ("this project: mmd rbf + permutation loop", "ours", _crm_permutation_test("rbf", "biased"),
                     ("rbf", "biased"), "crm_rbf_perm", "main"),
    "alibi_mmd": ("alibi-detect MMDDrift (pytorch, rbf, unbiased)", "peer", alibi_mmd_drift,
                  ("rbf", "unbiased"), "crm_rbf_perm", "alibi"),
    "hyppo_mmd": ("hyppo MMD (gaussian, permutations)", "peer", hyppo_mmd, None, "crm_rbf_perm", "main"),
    "crm_energy_perm": ("this project: mmd energy + permutation loop", "ours", _crm_permutation_test("energy", "biased"),
                        ("energy", "biased"), "crm_energy_perm", "main"),
    "hyppo_energy": ("hyppo Energy (unbiased, permutations)", "peer", hyppo_energy,
                     ("energy", "unbiased"), "crm_energy_perm", "main"),
    "dcor_energy_test": ("dcor energy_test (permutations)", "peer", dcor_energy_test,
                         ("energy", "biased"), "crm_energy_perm", "main"),
    "crm_energy_stat": ("this project: mmd energy, statistic only", "ours", _crm_statistic("energy", "biased"),
                        ("energy", "biased"), "crm_energy_stat", "main"),
    "dcor_energy_distance": ("dcor energy_distance, statistic only", "peer", dcor_energy_distance,
                             ("energy", "biased"), "crm_energy_stat", "main"),
}


def run_case(key: str, n: int, permutations: int, seed: int, budget: float) -> dict:
    """In the forked child: build the data, time one full test, compare the statistic with ours."""
    from peers.conventions import relative_difference
    from peers.isolate import measure

    _, _, factory, reference, _, _ = METHODS[key]
    small_x, small_y = make_data(32, seed)
    factory(small_x, small_y, 2, seed)()  # first-call costs (imports, numba JIT, op registration)
    x, y = make_data(n, seed)
    result = measure(factory(x, y, permutations, seed), budget=budget, max_repeats=3)
    statistic, pvalue = result.pop("output")
    result.update(statistic=statistic, pvalue=pvalue, reference=None, rel_diff=None)
    if reference is not None and statistic is not None:
        import causal_rewards as cr

        kernel, estimator = reference
        ref = float(cr.mmd(x, y, kernel=kernel, bandwidth=BANDWIDTH, estimator=estimator))
        result.update(reference=ref, rel_diff=relative_difference(float(statistic), ref))
    return result
