"""Float64 NumPy brute-force reference of the design's statistics, written independently of the core:
every kernel matrix is formed in full and every bin pair is handled one at a time."""

from __future__ import annotations

import numpy as np


def kernel_matrix(a, b, kernel, bandwidths):
    d = np.asarray(a, dtype=np.float64)[:, None] - np.asarray(b, dtype=np.float64)[None, :]
    if kernel == "energy":
        return -np.abs(d)
    mats = []
    for s in bandwidths:
        if kernel == "rbf":
            mats.append(np.exp(-(d**2) / (2 * s * s)))
        elif kernel == "laplacian":
            mats.append(np.exp(-np.abs(d) / s))
        elif kernel == "imq":
            mats.append(1.0 / np.sqrt(1.0 + d**2 / (s * s)))
        else:
            raise AssertionError(kernel)
    return np.mean(mats, axis=0)


def median_bandwidth(rewards):
    r = np.asarray(rewards, dtype=np.float64)
    i, j = np.triu_indices(len(r), k=1)
    if len(i) == 0:
        return 1.0
    med = np.median(np.abs(r[i] - r[j]))
    return float(med) if med > 0 else 1.0


def resolve_bandwidths(rewards, bandwidth):
    if isinstance(bandwidth, str):
        return [median_bandwidth(rewards)]
    if np.ndim(bandwidth) == 0:
        return [float(bandwidth)]
    return [float(b) for b in bandwidth]


def pair_mmd(x, y, kernel, bandwidths, estimator):
    """MMD^2 of one bin pair, or None when the estimator cannot compute it."""
    nx, ny = len(x), len(y)
    if estimator == "linear":
        m = min(nx // 2, ny // 2)
        if m == 0:
            return None
        total = 0.0
        for i in range(m):
            k = lambda a, b: kernel_matrix([a], [b], kernel, bandwidths)[0, 0]
            total += k(x[2 * i], x[2 * i + 1]) + k(y[2 * i], y[2 * i + 1])
            total -= k(x[2 * i], y[2 * i + 1]) + k(x[2 * i + 1], y[2 * i])
        return total / m
    kxx, kyy, kxy = (kernel_matrix(a, b, kernel, bandwidths) for a, b in ((x, x), (y, y), (x, y)))
    if estimator == "biased":
        if nx == 0 or ny == 0:
            return None
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    if nx < 2 or ny < 2:
        return None
    within = lambda k, n: (k.sum() - np.trace(k)) / (n * (n - 1))
    return within(kxx, nx) + within(kyy, ny) - 2 * kxy.mean()


def matrix(rewards, bins, num_bins, kernel, bandwidths, estimator):
    r, b = np.asarray(rewards, dtype=np.float64), np.asarray(bins)
    out = np.full((num_bins, num_bins), np.nan)
    np.fill_diagonal(out, 0.0)
    for p in range(num_bins):
        for q in range(p + 1, num_bins):
            v = pair_mmd(r[b == p], r[b == q], kernel, bandwidths, estimator)
            if v is not None:
                out[p, q] = out[q, p] = v
    return out


def reduce(mat, reduction):
    upper = mat[np.triu_indices(mat.shape[0], k=1)]
    upper = upper[~np.isnan(upper)]
    if upper.size == 0:
        return None
    return {"mean": np.mean, "sum": np.sum, "max": np.max}[reduction](upper)


def pairwise_bin_mmd(rewards, bins, *, num_bins=None, groups=None, kernel="rbf", bandwidth=1.0,
                     estimator="biased", reduction="mean"):
    r, b = np.asarray(rewards, dtype=np.float64), np.asarray(bins)
    num_bins = int(b.max()) + 1 if num_bins is None else num_bins
    bandwidths = resolve_bandwidths(r, bandwidth)  # over all rewards, across bins and groups
    g = np.zeros(len(r), dtype=int) if groups is None else np.asarray(groups)
    mats = [matrix(r[g == k], b[g == k], num_bins, kernel, bandwidths, estimator) for k in range(int(g.max()) + 1)]
    if reduction == "none":
        return np.stack(mats) if groups is not None else mats[0]
    values = [v for v in (reduce(m, reduction) for m in mats) if v is not None]
    return float(np.mean(values)) if values else 0.0


def finite_difference_grad(fn, rewards, h=1e-6):
    r = np.asarray(rewards, dtype=np.float64)
    grad = np.empty_like(r)
    for i in range(len(r)):
        up, down = r.copy(), r.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (fn(up) - fn(down)) / (2 * h)
    return grad
