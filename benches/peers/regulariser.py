"""Suite 1: the training-size regulariser, forward + backward.

The statistic is the paper's penalty: the mean over bin pairs p < q (both non-empty) of the biased
rbf MMD^2 (bandwidth 1) between the rewards of bin p and of bin q, in float64; every method returns
it together with its gradient with respect to every reward (as a float64 numpy array), so one step
is one forward and one backward pass.

Data: n rewards N(0, 1) plus a shift of 0.5 * bin / M (so the pairs differ), bins uniform in [0, M).
"""

from __future__ import annotations

import numpy as np

BANDWIDTH = 1.0


def make_data(n: int, num_bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, num_bins, size=n).astype(np.int64)
    rewards = rng.standard_normal(n) + 0.5 * bins / num_bins
    return rewards, bins


# Each factory takes (rewards, bins, num_bins) and returns step() -> (value, grad ndarray).


def crm_rust_numpy(rewards, bins, num_bins):
    import causal_rewards as cr

    def step():
        value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, num_bins=num_bins, bandwidth=BANDWIDTH)
        return value, grad

    return step


def _torch_autograd_step(loss_fn, rewards):
    """step() for a torch function of a leaf tensor: forward, backward, read the gradient."""
    import torch

    leaf = torch.from_numpy(rewards.copy()).requires_grad_(True)

    def step():
        leaf.grad = None
        value = loss_fn(leaf)
        value.backward()
        return float(value.detach()), leaf.grad.numpy()

    return step


def crm_torch_op(backend):
    def factory(rewards, bins, num_bins):
        import causal_rewards as cr
        import torch

        bins_t = torch.from_numpy(bins)
        return _torch_autograd_step(
            lambda r: cr.pairwise_bin_mmd(r, bins_t, num_bins=num_bins, bandwidth=BANDWIDTH, backend=backend),
            rewards,
        )

    return factory


def paper_loop(rewards, bins, num_bins):
    import torch
    from baselines import paper_loop_mmd

    bins_t = torch.from_numpy(bins)
    return _torch_autograd_step(lambda r: paper_loop_mmd(r, bins_t, num_bins, BANDWIDTH), rewards)


def masked_matrix(rewards, bins, num_bins):
    import torch

    from peers.dense import masked_matrix_mmd

    bins_t = torch.from_numpy(bins)
    return _torch_autograd_step(lambda r: masked_matrix_mmd(r, bins_t, num_bins, BANDWIDTH), rewards)


def geomloss_batched(backend):
    """GeomLoss ``SamplesLoss("gaussian", blur=s)`` on all bin pairs at once.

    GeomLoss takes a batch of equally sized point clouds with weights: bin p's rewards are padded to
    the largest bin with zero weight, the P = #pairs clouds (x = bin p, y = bin q) go in one call,
    and MMD^2 = 2 * loss (GeomLoss returns half the squared kernel norm). Tensorized builds the
    (P, L, L) kernel blocks; "online" streams them through KeOps.
    """

    def factory(rewards, bins, num_bins):
        import torch
        from geomloss import SamplesLoss

        from peers.conventions import GEOMLOSS_GAUSSIAN_TO_MMD2

        counts = np.bincount(bins, minlength=num_bins)
        occupied = np.flatnonzero(counts)
        order = np.argsort(bins, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        width = int(counts.max())
        # index table (M, width) into the rewards, padded with index 0 (weight 0 there)
        table = np.zeros((num_bins, width), dtype=np.int64)
        weights = np.zeros((num_bins, width))
        for m in occupied:
            members = order[starts[m] : starts[m] + counts[m]]
            table[m, : counts[m]] = members
            weights[m, : counts[m]] = 1.0 / counts[m]
        p_idx, q_idx = np.triu_indices(len(occupied), k=1)
        p_bins, q_bins = occupied[p_idx], occupied[q_idx]
        table_t = torch.from_numpy(table)
        alpha = torch.from_numpy(weights[p_bins])
        beta = torch.from_numpy(weights[q_bins])
        p_t, q_t = torch.from_numpy(p_bins), torch.from_numpy(q_bins)
        loss = SamplesLoss("gaussian", blur=BANDWIDTH, backend=backend)

        def penalty(r):
            if len(p_bins) == 0:
                return r.sum() * 0.0
            padded = r[table_t]  # (M, width)
            x = padded[p_t].unsqueeze(-1)  # (P, width, 1)
            y = padded[q_t].unsqueeze(-1)
            return GEOMLOSS_GAUSSIAN_TO_MMD2 * loss(alpha, x, beta, y).mean()

        return _torch_autograd_step(penalty, rewards)

    return factory


# (key, table label, family, factory)
METHODS = [
    ("crm_rust_numpy", "this project: Rust, numpy value_and_grad", "ours", crm_rust_numpy),
    ("crm_torch_rust", "this project: torch op, backend='rust'", "ours", crm_torch_op("rust")),
    ("crm_torch_ref", "this project: torch op, backend='torch' (reference)", "ours", crm_torch_op("torch")),
    ("paper_loop", "paper's per-bin-pair torch loop", "baseline", paper_loop),
    ("masked_matrix", "dense masked-matrix MMD, torch (MinDiff formulation)", "baseline", masked_matrix),
    ("geomloss_tensorized", "GeomLoss SamplesLoss, tensorized (pairs batched)", "peer", geomloss_batched("tensorized")),
    ("geomloss_online", "GeomLoss SamplesLoss, online / KeOps (pairs batched)", "peer", geomloss_batched("online")),
]
REFERENCE = "crm_rust_numpy"


def run_case(key: str, n: int, num_bins: int, seed: int, budget: float) -> dict:
    """In the forked child: build the data, time the method's step, compare with the Rust reference."""
    from peers.conventions import relative_difference
    from peers.isolate import measure

    factory = {k: f for k, _, _, f in METHODS}[key]
    small_rewards, small_bins = make_data(64, num_bins, seed)
    factory(small_rewards, small_bins, num_bins)()  # first-call costs (imports, op registration, KeOps JIT)
    rewards, bins = make_data(n, num_bins, seed)
    step = factory(rewards, bins, num_bins)
    result = measure(step, budget=budget)
    value, grad = result.pop("output")
    ref_value, ref_grad = crm_rust_numpy(rewards, bins, num_bins)()  # untimed, after the measurement
    grad_scale = float(np.max(np.abs(ref_grad))) or 1.0
    result.update(
        statistic=float(value),
        reference=float(ref_value),
        rel_diff=relative_difference(float(value), float(ref_value)),
        grad_rel_diff=float(np.max(np.abs(np.asarray(grad, dtype=np.float64) - ref_grad)) / grad_scale),
    )
    return result
