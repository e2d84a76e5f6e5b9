"""Triton kernels for pairwise-bin MMD^2 (the host side is ``triton_mmd``).

This module is loaded twice by ``triton_mmd``: once compiled for CUDA, and once with Triton's
interpreter switched on (TRITON_INTERPRET=1 while the decorators run) for CPU tensors, so that the
helpers below resolve to the same mode as the kernel that calls them. The kernels use only Triton
builtins and their own helpers (``tl.full``, ``tl.reduce`` with ``_add``; not ``tl.zeros`` or
``tl.sum``, which are ``triton.jit`` functions of triton.language and so fixed to the mode in which
triton was first imported), so the interpreter works whatever imported triton first.

Kernels of d = a - b with a per-bandwidth scale c (the host averages over bandwidths):
    0 rbf        k = exp(-c d^2)             c = 1 / (2 s^2)   dk/dd = -2 c d k
    1 laplacian  k = exp(-c |d|)             c = 1 / s         dk/dd = -sign(d) c k   (0 at d = 0)
    2 imq        k = (1 + c d^2)^(-1/2)      c = 1 / s^2       dk/dd = -c d k^3
    3 energy     k = -|d|                                      dk/dd = -sign(d)       (0 at d = 0)
"""

import triton
import triton.language as tl


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _value_and_slope(d, c, KERNEL: tl.constexpr):
    if KERNEL == 0:
        k = tl.exp(-c * d * d)
        slope = -2.0 * c * d * k
    elif KERNEL == 1:
        k = tl.exp(-c * tl.abs(d))
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
        slope = -sign * c * k
    elif KERNEL == 2:
        k = 1.0 / tl.sqrt(1.0 + c * d * d)
        slope = -c * d * k * k * k
    else:
        k = -tl.abs(d)
        slope = -tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    return k, slope


@triton.jit
def _mean_kernel(d, scales_ptr, NUM_SCALES: tl.constexpr, KERNEL: tl.constexpr, DTYPE: tl.constexpr):
    """(k, dk/dd) averaged over the bandwidths."""
    k, slope = _value_and_slope(d, tl.load(scales_ptr).to(DTYPE), KERNEL)
    for t in tl.static_range(1, NUM_SCALES):
        k_t, slope_t = _value_and_slope(d, tl.load(scales_ptr + t).to(DTYPE), KERNEL)
        k += k_t
        slope += slope_t
    if NUM_SCALES > 1:
        k = k / NUM_SCALES
        slope = slope / NUM_SCALES
    return k, slope


@triton.jit
def row_bin_sums(
    r_ptr,
    bins_ptr,
    groups_ptr,
    scales_ptr,
    n,
    num_bins,
    sums_ptr,
    slopes_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    HAS_GROUPS: tl.constexpr,
    DTYPE: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """For each row i: sums[i, q] = sum_{j in bin q, group of i} k(r_i - r_j) and slopes[i, q] the
    same sum of dk/dd, over all columns j, tile by tile. The kernel tile stays in registers; per-bin
    sums come from a one-hot dot of the tile with the column block's bins (masked columns have bin -1
    and so a zero one-hot row)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_I + tl.arange(0, BLOCK_I)
    row_ok = rows < n
    r_i = tl.load(r_ptr + rows, mask=row_ok, other=0.0).to(DTYPE)
    if HAS_GROUPS:
        g_i = tl.load(groups_ptr + rows, mask=row_ok, other=-1)
    bin_ids = tl.arange(0, BLOCK_M)
    acc_k = tl.full((BLOCK_I, BLOCK_M), 0.0, DTYPE)
    acc_slope = tl.full((BLOCK_I, BLOCK_M), 0.0, DTYPE)
    for start in range(0, n, BLOCK_J):
        cols = start + tl.arange(0, BLOCK_J)
        col_ok = cols < n
        r_j = tl.load(r_ptr + cols, mask=col_ok, other=0.0).to(DTYPE)
        b_j = tl.load(bins_ptr + cols, mask=col_ok, other=-1)
        k, slope = _mean_kernel(r_i[:, None] - r_j[None, :], scales_ptr, NUM_SCALES, KERNEL, DTYPE)
        if HAS_GROUPS:
            g_j = tl.load(groups_ptr + cols, mask=col_ok, other=-2)
            same = g_i[:, None] == g_j[None, :]
            k = tl.where(same, k, 0.0)
            slope = tl.where(same, slope, 0.0)
        one_hot = (b_j[:, None] == bin_ids[None, :]).to(DTYPE)
        acc_k = tl.dot(k.to(DTYPE), one_hot, acc_k, input_precision="ieee")
        acc_slope = tl.dot(slope.to(DTYPE), one_hot, acc_slope, input_precision="ieee")
    offsets = rows[:, None].to(tl.int64) * num_bins + bin_ids[None, :]  # n * M may pass 2^31
    out_ok = row_ok[:, None] & (bin_ids[None, :] < num_bins)
    tl.store(sums_ptr + offsets, acc_k, mask=out_ok)
    tl.store(slopes_ptr + offsets, acc_slope, mask=out_ok)


@triton.jit
def linear_pair_sums(
    sorted_ptr,
    starts_ptr,
    counts_ptr,
    scales_ptr,
    num_bins,
    out_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Program (g, p): for every q > p, out[g, p, q] = sum_{i < m} k(x_2i, x_2i+1) + k(y_2i, y_2i+1)
    - k(x_2i, y_2i+1) - k(x_2i+1, y_2i), with x, y the samples of cells (g, p), (g, q) in input
    order (``sorted_ptr`` holds the rewards sorted by cell, stably) and m = min(n_p // 2, n_q // 2)."""
    cell_p = tl.program_id(0)
    group = cell_p // num_bins
    p = cell_p % num_bins
    start_p = tl.load(starts_ptr + cell_p)
    half_p = tl.load(counts_ptr + cell_p) // 2
    for q in range(p + 1, num_bins):
        cell_q = group * num_bins + q
        start_q = tl.load(starts_ptr + cell_q)
        half = tl.minimum(half_p, tl.load(counts_ptr + cell_q) // 2)
        total = tl.full((BLOCK,), 0.0, DTYPE)
        for i0 in range(0, half, BLOCK):
            i = i0 + tl.arange(0, BLOCK)
            ok = i < half
            x_a = tl.load(sorted_ptr + start_p + 2 * i, mask=ok, other=0.0).to(DTYPE)
            x_b = tl.load(sorted_ptr + start_p + 2 * i + 1, mask=ok, other=0.0).to(DTYPE)
            y_a = tl.load(sorted_ptr + start_q + 2 * i, mask=ok, other=0.0).to(DTYPE)
            y_b = tl.load(sorted_ptr + start_q + 2 * i + 1, mask=ok, other=0.0).to(DTYPE)
            k_xx, _s0 = _mean_kernel(x_a - x_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_yy, _s1 = _mean_kernel(y_a - y_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_xy, _s2 = _mean_kernel(x_a - y_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_yx, _s3 = _mean_kernel(x_b - y_a, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            total += tl.where(ok, k_xx + k_yy - k_xy - k_yx, 0.0)
        tl.store(out_ptr + cell_p * num_bins + q, tl.reduce(total, 0, _add))


@triton.jit
def linear_grad(
    sorted_ptr,
    starts_ptr,
    counts_ptr,
    scales_ptr,
    weights_ptr,
    num_bins,
    grad_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Program (g, p): the gradient, for the samples of cell (g, p), of sum_{q} w_gpq / m_pq times the
    linear statistic's sum for the pair {p, q} (``weights_ptr`` holds w symmetric, zero diagonal).
    Cell p is x when p < q and y when p > q; each program writes only its own cell's entries."""
    cell_p = tl.program_id(0)
    group = cell_p // num_bins
    p = cell_p % num_bins
    start_p = tl.load(starts_ptr + cell_p)
    half_p = tl.load(counts_ptr + cell_p) // 2
    for i0 in range(0, half_p, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        own_ok = i < half_p
        own_a = tl.load(sorted_ptr + start_p + 2 * i, mask=own_ok, other=0.0).to(DTYPE)
        own_b = tl.load(sorted_ptr + start_p + 2 * i + 1, mask=own_ok, other=0.0).to(DTYPE)
        grad_a = tl.full((BLOCK,), 0.0, DTYPE)
        grad_b = tl.full((BLOCK,), 0.0, DTYPE)
        for q in range(num_bins):
            cell_q = group * num_bins + q
            weight = tl.load(weights_ptr + cell_p * num_bins + q).to(DTYPE)
            half = tl.minimum(half_p, tl.load(counts_ptr + cell_q) // 2)
            scale = weight / tl.maximum(half, 1).to(DTYPE)
            ok = i < tl.where(weight != 0.0, half, 0)  # a zero weight (q = p included) loads nothing
            start_q = tl.load(starts_ptr + cell_q)
            other_a = tl.load(sorted_ptr + start_q + 2 * i, mask=ok, other=0.0).to(DTYPE)
            other_b = tl.load(sorted_ptr + start_q + 2 * i + 1, mask=ok, other=0.0).to(DTYPE)
            own_is_x = p < q
            x_a = tl.where(own_is_x, own_a, other_a)
            x_b = tl.where(own_is_x, own_b, other_b)
            y_a = tl.where(own_is_x, other_a, own_a)
            y_b = tl.where(own_is_x, other_b, own_b)
            _k0, s_xx = _mean_kernel(x_a - x_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k1, s_yy = _mean_kernel(y_a - y_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k2, s_xy = _mean_kernel(x_a - y_b, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k3, s_yx = _mean_kernel(x_b - y_a, scales_ptr, NUM_SCALES, KERNEL, DTYPE)
            d_a = tl.where(own_is_x, s_xx - s_xy, s_yy + s_yx)
            d_b = tl.where(own_is_x, -s_xx - s_yx, -s_yy + s_xy)
            grad_a += tl.where(ok, scale * d_a, 0.0)
            grad_b += tl.where(ok, scale * d_b, 0.0)
        tl.store(grad_ptr + start_p + 2 * i, grad_a, mask=own_ok)
        tl.store(grad_ptr + start_p + 2 * i + 1, grad_b, mask=own_ok)
