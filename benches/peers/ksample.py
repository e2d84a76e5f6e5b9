"""Suite 2b: k-sample tests with permutations (k = 5 samples), as far in n as each goes.

Data: sample g ~ N(SHIFT * g, 1), g = 0..k-1, n each, 1-D; B permutations for every test.
This project's statistic is the audit's: the mean over sample pairs g < h of the biased MMD^2.
dcor's k-sample ``energy_test`` statistic is sum over g < h of n_g n_h / (n_g + n_h) * E(g, h) (our
pairwise energy MMD^2 weighted), compared in that convention; hyppo's ``KSample`` tests return
normalised distance correlations, so only their p-values are comparable. alibi-detect's MMDDrift is
two-sample only.
"""

from __future__ import annotations

import numpy as np

K = 5
SHIFT = 0.05
BANDWIDTH = 1.0
#: beyond this many rewards in all the O(n^2) rbf reference is not computed
REFERENCE_MAX_ROWS = 50_000


def make_data(n: int, seed: int, k: int = K) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) + SHIFT * g for g in range(k)]


def _pooled(samples):
    labels = np.repeat(np.arange(len(samples)), [len(s) for s in samples])
    return np.concatenate(samples), labels


def _pairwise_energy(samples) -> np.ndarray:
    """(k, k) energy MMD^2 of every pair of samples, from the O(n log n) NumPy formula."""
    from peers.conventions import energy_distance_1d

    k = len(samples)
    out = np.zeros((k, k))
    for g in range(k):
        for h in range(g + 1, k):
            out[g, h] = out[h, g] = energy_distance_1d(samples[g], samples[h])
    return out


def mean_pairwise_energy(samples) -> float:
    matrix = _pairwise_energy(samples)
    return float(matrix[np.triu_indices(len(samples), k=1)].mean())


def dcor_weighted_energy(samples) -> float:
    """sum over g < h of n_g n_h / (n_g + n_h) * E(g, h): dcor's k-sample energy_test statistic."""
    matrix = _pairwise_energy(samples)
    sizes = [len(s) for s in samples]
    return float(sum(sizes[g] * sizes[h] / (sizes[g] + sizes[h]) * matrix[g, h]
                     for g in range(len(samples)) for h in range(g + 1, len(samples))))


def mean_pairwise_rbf(samples) -> float | None:
    """This project's all-pairs statistic (pairwise_bin_mmd, rbf): the reference of the grid sketch."""
    import causal_rewards as cr

    rewards, labels = _pooled(samples)
    if len(rewards) > REFERENCE_MAX_ROWS:
        return None
    return float(cr.pairwise_bin_mmd(rewards, labels, num_bins=len(samples), bandwidth=BANDWIDTH))


def _audit(kernel: str, method: str):
    def factory(samples, permutations, seed):
        import causal_rewards as cr

        rewards, labels = _pooled(samples)
        data = {"reward": rewards, "sample": labels}

        def step():
            report = cr.audit(data, reward="reward", by="sample", binning="categorical", kernel=kernel,
                              bandwidth=BANDWIDTH, permutations=permutations, seed=seed, method=method, progress=False)
            return float(report.statistic), float(report.pvalue)

        return step

    return factory


def _crm_permutation_loop(kernel: str):
    def factory(samples, permutations, seed):
        import causal_rewards as cr

        rewards, labels = _pooled(samples)
        k = len(samples)

        def statistic(bins):
            return cr.pairwise_bin_mmd(rewards, bins, num_bins=k, kernel=kernel, bandwidth=BANDWIDTH)

        def step():
            rng = np.random.default_rng(seed)
            observed = statistic(labels)
            exceed = sum(statistic(rng.permutation(labels)) >= observed for _ in range(permutations))
            return observed, (1 + exceed) / (1 + permutations)

        return step

    return factory


def dcor_energy_test(samples, permutations, seed):
    import dcor

    def step():
        result = dcor.homogeneity.energy_test(*samples, num_resamples=permutations, random_state=seed)
        return float(result.statistic), float(result.pvalue)

    return step


def _hyppo(indep_test: str, **kwargs):
    def factory(samples, permutations, seed):
        from hyppo.ksample import KSample

        columns = [s[:, None] for s in samples]

        def step():
            _, pvalue = KSample(indep_test, **kwargs).test(*columns, reps=permutations, workers=1, auto=False,
                                                           random_state=seed)
            return None, float(pvalue)

        return step

    return factory


# key -> (table label, family, factory, reference(samples) in the method's convention or None, group)
METHODS = {
    "audit_energy_scan": ("this project: audit energy, O(n log n) scan", "ours", _audit("energy", "scan"),
                          mean_pairwise_energy, "energy"),
    "crm_energy_perm": ("this project: pairwise_bin_mmd energy + Python permutation loop", "ours",
                        _crm_permutation_loop("energy"), mean_pairwise_energy, "energy"),
    "dcor_energy_test": ("dcor energy_test (k samples)", "peer", dcor_energy_test, dcor_weighted_energy, "energy"),
    "hyppo_dcorr": ("hyppo KSample('Dcorr') (energy)", "peer", _hyppo("Dcorr"), None, "energy"),
    "audit_rbf_grid": ("this project: audit rbf, grid sketch", "ours", _audit("rbf", "grid"), mean_pairwise_rbf,
                       "rbf"),
    "audit_rbf_exact": ("this project: audit rbf, exact", "ours", _audit("rbf", "exact"), mean_pairwise_rbf, "rbf"),
    "hyppo_hsic": ("hyppo KSample('Hsic') (gaussian)", "peer", _hyppo("Hsic", compute_distkern="gaussian", gamma=0.5),
                   None, "rbf"),
}


def run_case(key: str, n: int, permutations: int, seed: int, budget: float) -> dict:
    """In the forked child: build the k samples, time one full test, compare the statistic."""
    from peers.conventions import relative_difference
    from peers.isolate import measure

    _, _, factory, reference, _ = METHODS[key]
    factory(make_data(16, seed), 2, seed)()  # first-call costs (imports, numba JIT)
    samples = make_data(n, seed)
    result = measure(factory(samples, permutations, seed), budget=budget, max_repeats=3)
    statistic, pvalue = result.pop("output")
    result.update(statistic=statistic, pvalue=pvalue, reference=None, rel_diff=None)
    ref = reference(samples) if reference is not None and statistic is not None else None
    if ref is not None:
        result.update(reference=ref, rel_diff=relative_difference(float(statistic), ref))
    return result
