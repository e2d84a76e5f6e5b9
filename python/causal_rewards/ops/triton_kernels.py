"""Triton kernels for pairwise-bin MMD^2 (the host side is ``triton_mmd``).

This module is loaded twice by ``triton_mmd``: once compiled for CUDA, and once with Triton's
interpreter switched on (TRITON_INTERPRET=1 while the decorators run) for CPU tensors, so that the
helpers below resolve to the same mode as the kernel that calls them. The kernels use only Triton
builtins and their own helpers (``tl.full``, ``tl.reduce`` with ``_SUM``; not ``tl.zeros`` or
``tl.sum``, which are ``triton.jit`` functions of triton.language and so fixed to the mode in which
triton was first imported), so the interpreter works whatever imported triton first. Interpreted,
``_SUM`` is triton's own sum combiner, which the interpreter recognises and hands to numpy (its
generic reduction calls the combiner once per element), and the device helpers (``_device``) are
plain functions, which the interpreted kernels call directly (a nested interpreted call re-patches
triton.language each time, about a millisecond).

Differences d are in units of the smallest bandwidth, log2(e) folded in (``scaling``, base2), and
rho_t <= 1 are the other bandwidths' ratios (rho_0 = 1). ``_terms`` returns k and t summed over the
bandwidths, with dk/dd = -C t / NUM_SCALES (C applied by the host):
    0 rbf        k = exp2(-(rho d)^2)         t = d sum rho^2 k              C = 2 ln 2
    1 laplacian  k = exp2(-rho |d|)           t = sign(d) sum rho k          C = ln 2
    2 imq        k = (1 + (rho d)^2)^(-1/2)   t = d sum rho^2 k^3            C = 1
    3 energy     k = -|d|                     t = sign(d)                    C = 1
"""

import triton
import triton.language as tl


@triton.jit
def _add(a, b):
    return a + b


INTERPRETED = triton.knobs.runtime.interpret
_SUM = tl.standard._sum_combine if INTERPRETED else _add
_device = (lambda fn: fn) if INTERPRETED else triton.jit


@_device
def _sign(d, v):
    return tl.where(d > 0, v, tl.where(d < 0, -v, 0.0))


@_device
def _terms(d, ratios_ptr, NUM_SCALES: tl.constexpr, KERNEL: tl.constexpr, DTYPE: tl.constexpr):
    """(k, t) of differences d, summed over the bandwidths (see the module docstring)."""
    if KERNEL == 0:
        k = tl.exp2(-(d * d))
        weighted = k
        for s in tl.static_range(1, NUM_SCALES):
            rho = tl.load(ratios_ptr + s).to(DTYPE)
            y = d * rho
            k_s = tl.exp2(-(y * y))
            k += k_s
            weighted += (rho * rho) * k_s
        t = d * weighted
    elif KERNEL == 1:
        a = tl.abs(d)
        k = tl.exp2(-a)
        weighted = k
        for s in tl.static_range(1, NUM_SCALES):
            rho = tl.load(ratios_ptr + s).to(DTYPE)
            k_s = tl.exp2(-(a * rho))
            k += k_s
            weighted += rho * k_s
        t = _sign(d, weighted)
    elif KERNEL == 2:
        k = 1.0 / tl.sqrt(1.0 + d * d)
        weighted = k * k * k
        for s in tl.static_range(1, NUM_SCALES):
            rho = tl.load(ratios_ptr + s).to(DTYPE)
            y = d * rho
            k_s = 1.0 / tl.sqrt(1.0 + y * y)
            k += k_s
            weighted += (rho * rho) * (k_s * k_s * k_s)
        t = d * weighted
    else:
        k = -tl.abs(d)
        t = _sign(d, tl.full(d.shape, 1.0, DTYPE))
    return k, t


@_device
def _tile(u_i, u_j, rows_ok, cols_ok, ratios_ptr, NUM_SCALES: tl.constexpr, KERNEL: tl.constexpr,
          DTYPE: tl.constexpr, MASKED: tl.constexpr):
    """(k, t) of one tile of pairs. Unmasked, the padding lanes hold values so far apart that
    their k and t are exactly 0; masked (kernels that do not vanish far away), they are zeroed."""
    k, t = _terms(u_i[:, None] - u_j[None, :], ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
    if MASKED:
        ok = rows_ok[:, None] & cols_ok[None, :]
        k = tl.where(ok, k, 0.0)
        t = tl.where(ok, t, 0.0)
    return k, t


@_device
def _segment(u_ptr, tile_start_ptr, tile_len_ptr, ratios_ptr, cols_ptr, first, last, bin_b, w, u_i, rows_ok,
             acc_rows, acc_sums, pad_col, NUM_SCALES: tl.constexpr, KERNEL: tl.constexpr, DTYPE: tl.constexpr,
             MASKED: tl.constexpr, NEED_SUMS: tl.constexpr, NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr,
             BLOCK_M: tl.constexpr):
    """Row tile a against the column tiles first .. last - 1, all of one cell (g, bin_b), so of one
    weight w: k and w t accumulate per element and are reduced once (k here, w t by the caller);
    only the column sums of t are reduced per tile, into this program's own slot."""
    lanes = tl.arange(0, BLOCK)
    w_c = w.to(DTYPE)
    acc_k = tl.full((BLOCK, BLOCK), 0.0, DTYPE)
    for b in range(first, last):
        start_b = tl.load(tile_start_ptr + b)
        cols_ok = lanes < tl.load(tile_len_ptr + b)
        u_j = tl.load(u_ptr + start_b + lanes, mask=cols_ok, other=pad_col)
        k, t = _tile(u_i, u_j, rows_ok, cols_ok, ratios_ptr, NUM_SCALES, KERNEL, DTYPE, MASKED)
        if NEED_SUMS:
            acc_k += k
        if NEED_GRAD:
            acc_rows += w_c * t
            column = tl.load(cols_ptr + start_b + lanes, mask=cols_ok, other=0.0)
            column -= w * tl.reduce(t, 0, _SUM).to(tl.float64)
            tl.store(cols_ptr + start_b + lanes, column, mask=cols_ok)
            tl.debug_barrier()  # the next row tile reads these columns back
    if NEED_SUMS:
        acc_sums += tl.where(tl.arange(0, BLOCK_M) == bin_b, tl.reduce(acc_k, None, _SUM).to(tl.float64), 0.0)
    return acc_rows, acc_sums


@triton.jit
def pair_sweep(
    u_ptr,
    tile_start_ptr,
    tile_len_ptr,
    tile_cell_ptr,
    tile_next_ptr,
    tile_end_ptr,
    chunk_x_ptr,
    chunk_y_ptr,
    ratios_ptr,
    weights_ptr,
    n,
    num_bins,
    num_tiles,
    chunk,
    pads_ptr,
    sums_ptr,
    rows_ptr,
    cols_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    DTYPE: tl.constexpr,
    MASKED: tl.constexpr,
    NEED_SUMS: tl.constexpr,
    NEED_GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Every unordered pair of tiles (a <= b) of one group, once, for the rewards sorted by
    (group, bin); a tile lies inside one cell (``tile_next``: the first tile of the next cell,
    ``tile_end``: of the next group). Program (x, y) owns the pairs with a in chunk x, b in chunk y
    and writes only slots no other program writes, so results repeat bit for bit:

        sums[y, a, q]   sum over b in chunk y of cell bin q of sum_ij k (diagonal tile: half of it)
        rows[y, i]      sum over b of W[cell_a, bin_b] sum_j t_ij, for the rows i of tile a
        cols[x, j]      minus sum over a of W[cell_a, bin_b] sum_i t_ij, for the columns j of tile b

    With NEED_SUMS false, cells of zero weight are skipped (the max reduction's second pass).
    """
    x = tl.load(chunk_x_ptr + tl.program_id(0))
    y = tl.load(chunk_y_ptr + tl.program_id(0))
    pad_row = tl.load(pads_ptr)  # the padding lanes of rows and of columns (see _tile)
    pad_col = tl.load(pads_ptr + 1)
    lanes = tl.arange(0, BLOCK)
    b_lo = y * chunk
    b_hi = tl.minimum(b_lo + chunk, num_tiles)
    for a in range(x * chunk, tl.minimum(x * chunk + chunk, num_tiles)):
        start_a = tl.load(tile_start_ptr + a)
        rows_ok = lanes < tl.load(tile_len_ptr + a)
        cell_a = tl.load(tile_cell_ptr + a)
        group_first_cell = cell_a - cell_a % num_bins
        u_i = tl.load(u_ptr + start_a + lanes, mask=rows_ok, other=pad_row)
        acc_rows = tl.full((BLOCK, BLOCK), 0.0, DTYPE)
        acc_sums = tl.full((BLOCK_M,), 0.0, tl.float64)
        if x == y:  # the diagonal tile: every ordered pair in it, no column side
            u_j = tl.load(u_ptr + start_a + lanes, mask=rows_ok, other=pad_col)
            k, t = _tile(u_i, u_j, rows_ok, rows_ok, ratios_ptr, NUM_SCALES, KERNEL, DTYPE, MASKED)
            bin_a = cell_a - group_first_cell
            if NEED_SUMS:
                half = 0.5 * tl.reduce(k, None, _SUM).to(tl.float64)
                acc_sums += tl.where(tl.arange(0, BLOCK_M) == bin_a, half, 0.0)
            if NEED_GRAD:
                acc_rows += tl.load(weights_ptr + cell_a * num_bins + bin_a).to(DTYPE) * t
        b = tl.maximum(a + 1, b_lo)
        b_end = tl.minimum(b_hi, tl.load(tile_end_ptr + a))
        while b < b_end:  # one cell of column tiles at a time
            last = tl.minimum(tl.load(tile_next_ptr + b), b_end)
            bin_b = tl.load(tile_cell_ptr + b) - group_first_cell
            w = tl.load(weights_ptr + cell_a * num_bins + bin_b) if NEED_GRAD else 0.0
            if NEED_SUMS or w != 0.0:
                acc_rows, acc_sums = _segment(
                    u_ptr, tile_start_ptr, tile_len_ptr, ratios_ptr, cols_ptr + x.to(tl.int64) * n, b, last,
                    bin_b, w, u_i, rows_ok, acc_rows, acc_sums, pad_col, NUM_SCALES, KERNEL, DTYPE, MASKED,
                    NEED_SUMS, NEED_GRAD, BLOCK, BLOCK_M,
                )
            b = last
        if NEED_SUMS:
            tl.store(sums_ptr + (y.to(tl.int64) * num_tiles + a) * BLOCK_M + tl.arange(0, BLOCK_M), acc_sums)
        if NEED_GRAD:
            row_sums = tl.reduce(acc_rows, 1, _SUM).to(tl.float64)
            tl.store(rows_ptr + y.to(tl.int64) * n + start_a + lanes, row_sums, mask=rows_ok)


@triton.jit
def linear_pair_sums(
    sorted_ptr,
    starts_ptr,
    counts_ptr,
    ratios_ptr,
    num_bins,
    out_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Program (g, p): for every q > p, out[g, p, q] = sum_{i < m} k(x_2i, x_2i+1) + k(y_2i, y_2i+1)
    - k(x_2i, y_2i+1) - k(x_2i+1, y_2i) (k summed over the bandwidths), with x, y the samples of
    cells (g, p), (g, q) in input order (``sorted_ptr`` holds the rewards sorted by cell, stably)
    and m = min(n_p // 2, n_q // 2)."""
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
            k_xx, _t0 = _terms(x_a - x_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_yy, _t1 = _terms(y_a - y_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_xy, _t2 = _terms(x_a - y_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            k_yx, _t3 = _terms(x_b - y_a, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            total += tl.where(ok, k_xx + k_yy - k_xy - k_yx, 0.0)
        tl.store(out_ptr + cell_p * num_bins + q, tl.reduce(total, 0, _SUM))


@triton.jit
def linear_grad(
    sorted_ptr,
    starts_ptr,
    counts_ptr,
    ratios_ptr,
    weights_ptr,
    num_bins,
    grad_ptr,
    NUM_SCALES: tl.constexpr,
    KERNEL: tl.constexpr,
    DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Program (g, p): for the samples of cell (g, p), the gradient (in t, see the module
    docstring) of sum_{q} w_gpq / m_pq times the linear statistic's sum for the pair {p, q}
    (``weights_ptr`` holds w symmetric, zero diagonal). Cell p is x when p < q and y when p > q;
    each program writes only its own cell's entries."""
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
            _k0, s_xx = _terms(x_a - x_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k1, s_yy = _terms(y_a - y_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k2, s_xy = _terms(x_a - y_b, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            _k3, s_yx = _terms(x_b - y_a, ratios_ptr, NUM_SCALES, KERNEL, DTYPE)
            d_a = tl.where(own_is_x, s_xx - s_xy, s_yy + s_yx)
            d_b = tl.where(own_is_x, -s_xx - s_yx, -s_yy + s_xy)
            grad_a += tl.where(ok, scale * d_a, 0.0)
            grad_b += tl.where(ok, scale * d_b, 0.0)
        tl.store(grad_ptr + start_p + 2 * i, grad_a, mask=own_ok)
        tl.store(grad_ptr + start_p + 2 * i + 1, grad_b, mask=own_ok)
