"""Host side of the fused Triton kernels: launches, then the small M x M epilogue in float64.

Rewards are scaled once (``scaling``, base2) and sorted by cell (group, bin), so that a cell is a
contiguous segment; the segments are cut into tiles of at most BLOCK rewards, each inside one cell.

Exact estimators (``pair_sweep``): every unordered pair of tiles of a group once. A tile pair
(a, b) lies in one cell pair (p, q), so the per-bin sums are plain reductions of the tile: its block
sum adds to S_pq, its row sums (for a) and column sums (for b) of t = -k' (up to a constant) add to
the gradient with the constant weight W_pq = d value / d S_pq. For "mean" and "sum" W follows from
the counts before the sweep, so one pass gives value and gradient; "max" needs the matrix first (a
second pass, over the tile pairs with a weight only). Programs own disjoint output slots that are
summed in a fixed order afterwards: no atomics, and a run repeats bit for bit.
    S = A + A^T (A: the visited tile pairs' block sums, half of each diagonal tile),
    MMD^2 from S and the counts (``epilogue``), value = sum_gpq w_gpq MMD^2_gpq,
    d value / d r_i = 2 sum_j W[b_i, b_j] k'(r_i - r_j).
Linear estimator (two launches): ``linear_pair_sums`` for the matrix, then ``linear_grad`` with the
pair weights, each program owning one cell.

Accumulation: float32 for float32 input and lower (float64 when the scaled rewards leave float32's
range), float64 for float64; each tile's sums are combined in float64. On CPU tensors the kernels
run in Triton's interpreter (slow; for tests).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import epilogue
from .problem import Problem, require_memory
from .scaling import Scaling, kernel_at_zero, narrow

KERNEL_IDS = {"rbf": 0, "laplacian": 1, "imq": 2, "energy": 3}
_SLOPE = {"rbf": 2.0 * math.log(2.0), "laplacian": math.log(2.0), "imq": 1.0, "energy": 1.0}  # C in dk/dd = -C t
MAX_BINS = 256
_loaded: dict[bool, object] = {}


def available() -> bool:
    """Whether the triton package can be imported."""
    return importlib.util.find_spec("triton") is not None


def require(device: torch.device) -> None:
    """Raises a clear error when the Triton backend cannot run on ``device``."""
    if not available():
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install triton); use 'auto' or 'torch'"
        )
    if device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"backend='triton' runs on CUDA tensors (or on CPU tensors in Triton's interpreter), "
            f"not on {device}"
        )


def kernels(interpret: bool):
    """The kernel module, compiled for the GPU or decorated for Triton's interpreter.

    The interpreter is chosen when the ``triton.jit`` decorators run, so the module is loaded a
    second time, under its own name, with TRITON_INTERPRET=1 set only for that load.
    """
    if interpret not in _loaded:
        import triton

        path = Path(__file__).with_name("triton_kernels.py")
        name = f"causal_rewards.ops._triton_kernels_{'interpreted' if interpret else 'compiled'}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = interpret
            spec.loader.exec_module(module)
        _loaded[interpret] = module
    return _loaded[interpret]


def value_and_grad(problem: Problem, reduction: str, config: Config | None = None):
    """(value in float64, d value / d rewards in the compute dtype) for a scalar reduction.

    "mean" and "sum": one sweep, the weights following from the counts. "max": two, the second
    only over the tile pairs of the winning pairs.
    """
    sweep = _sweep(problem, config)
    if reduction == "max":
        matrix = sweep.matrix()
        pair_weights = epilogue.reduction_weights(matrix, reduction)
        grad = sweep.grad(pair_weights)
    else:
        pair_weights = epilogue.count_weights(problem.counts, problem.estimator, reduction)
        matrix, grad = sweep.matrix_and_grad(pair_weights)
    return epilogue.weighted_sum(matrix, pair_weights), grad


def matrix(problem: Problem, config: Config | None = None):
    """The (G, M, M) matrix (float64)."""
    return _sweep(problem, config).matrix()


def matrix_vjp(problem: Problem, upstream: torch.Tensor, config: Config | None = None):
    """Gradient of sum(upstream * matrix) with respect to the rewards."""
    shape = (problem.num_groups, problem.num_bins, problem.num_bins)
    pair_weights = epilogue.fold_upstream(upstream.reshape(shape), problem.counts, problem.estimator)
    return _sweep(problem, config).grad(pair_weights)


def _sweep(problem: Problem, config: Config | None):
    if problem.num_bins > MAX_BINS:
        raise ValueError(f"backend='triton' supports up to {MAX_BINS} bins, got num_bins={problem.num_bins}")
    n, cells = problem.rewards.shape[0], float(problem.num_cells)
    buffers = 8.0 * (16 * cells * problem.num_bins + 2 * 32 * n + 32 * (n / 16 + cells) * max(16, problem.num_bins))
    require_memory(buffers, "backend='triton'", problem.rewards.device)
    return (_LinearSweep if problem.estimator == "linear" else _ExactSweep)(problem, config)


def _triton_dtype(dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


# --------------------------------------------------------------------------------------------------
# Launch configurations


@dataclass(frozen=True)
class Config:
    """One launch configuration of the exact sweep: square tiles of ``block`` rewards, and at most
    ``chunks`` chunks of tiles a side (chunks (chunks + 1) / 2 programs)."""

    block: int
    num_warps: int
    num_stages: int = 1
    chunks: int = 32


_WARPS = {16: (1, 2), 32: (2, 4), 64: (4, 8)}  # 128 would need more registers than a block can hold
AUTOTUNE = True  # time the candidates once per problem shape on the GPU (see _choose)
AUTOTUNE_MIN_N = 4096  # below, launches are too short for the choice to matter
_tuned: dict[tuple, Config] = {}


def candidates(n: int, num_cells: int) -> list[Config]:
    """The configurations worth trying for n rewards in num_cells cells, the default first.

    A tile lies inside one cell, so the default block is the largest power of two (16 to 64) that a
    mean cell fills; the candidates are it and its neighbours, with their warp counts, and the default
    with two pipeline stages.
    """
    per_cell = max(1, n // max(1, num_cells))
    default = min(64, max(16, 1 << (per_cell.bit_length() - 1)))
    blocks = [default] + [b for b in (default // 2, default * 2) if 16 <= b <= 64]
    configs = [Config(b, w) for b in blocks for w in _WARPS[b]]
    return configs + [Config(default, _WARPS[default][0], num_stages=2)]


def autotune_key(sweep: _ExactSweep, need_sums: bool, need_grad: bool) -> tuple:
    n, num_cells = sweep.sorted.shape[0], sweep.problem.num_groups * sweep.problem.num_bins
    per_cell = max(1, n // num_cells)
    return (*sorted(sweep.constants.items()), need_sums, need_grad, n.bit_length(), per_cell.bit_length())


def _choose(sweep: _ExactSweep, need_sums: bool, need_grad: bool, weights) -> Config:
    """The fastest candidate, timed once per key on the GPU; the default for small n. In the
    interpreter (CPU tensors), where every program costs Python time, the default in a few programs."""
    n, num_cells = sweep.sorted.shape[0], sweep.problem.num_groups * sweep.problem.num_bins
    configs = candidates(n, num_cells)
    if sweep.sorted.device.type != "cuda":
        return dataclasses.replace(configs[0], chunks=2)
    if n < AUTOTUNE_MIN_N or not AUTOTUNE:
        return configs[0]
    key = autotune_key(sweep, need_sums, need_grad)
    if key not in _tuned:
        times = {}
        for config in configs:
            sweep.launch(config, need_sums, need_grad, weights)  # compile and warm up
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(3):
                sweep.launch(config, need_sums, need_grad, weights)
            end.record()
            end.synchronize()
            times[config] = start.elapsed_time(end)
        _tuned[key] = min(times, key=times.get)
    return _tuned[key]


# --------------------------------------------------------------------------------------------------
# The sweeps


class _Sweep:
    """What both estimators share: the scaled rewards sorted by cell, the kernel module and the
    conversion of the results (see ``scaling``; base2: log2(e) folded into the scale)."""

    def __init__(self, problem: Problem, config: Config | None):
        self.problem = problem
        self.config = config
        self.scale = Scaling.of(problem.kernel, problem.bandwidths, problem.max_abs, base2=True)
        self.compute = self.scale.dtype_for(problem.rewards.dtype, problem.max_abs)
        u = self.scale.apply(problem.rewards.detach(), self.compute)
        self.sorted = u[problem.by_cell.order].contiguous()
        self.module = kernels(interpret=problem.rewards.device.type == "cpu")
        self.ratios = torch.tensor(self.scale.ratios, dtype=torch.float64, device=u.device)
        self.constants = {
            "NUM_SCALES": len(self.scale.ratios),
            "KERNEL": KERNEL_IDS[problem.kernel],
            "DTYPE": _triton_dtype(self.compute),
        }

    def matrix_and_grad(self, pair_weights):
        return self.matrix(), self.grad(pair_weights)

    def finish_sums(self, sums: torch.Tensor) -> torch.Tensor:
        """Kernel sums (summed over the bandwidths) to the mean kernel's, in float64."""
        return sums.to(torch.float64) / len(self.scale.ratios)

    def finish_grad(self, sorted_t: torch.Tensor) -> torch.Tensor:
        """d value / d rewards, in the compute dtype, from sum_j w_ij t_ij per sorted reward."""
        factor = -_SLOPE[self.problem.kernel] / len(self.scale.ratios) * self.scale.grad_scale
        grad = self.problem.by_cell.unsort(sorted_t.to(torch.float64) * factor)
        return narrow(grad, self.compute, self.problem.bounds[1])


class _ExactSweep(_Sweep):
    """One launch of ``pair_sweep``: each unordered pair of tiles once (see the module docstring)."""

    def __init__(self, problem: Problem, config: Config | None):
        super().__init__(problem, config)
        if self.sorted.shape[0] >= 2**31:
            raise ValueError(f"backend='triton' takes fewer than 2**31 rewards, got {self.sorted.shape[0]}")
        self.constants["MASKED"], self.pads = self._pads()
        self._tiles: dict[int, Tiles] = {}

    def _pads(self):
        """(masked, [pad_row, pad_col]): rbf and laplacian put the padding lanes so far away that
        every term with them is exactly 0 (no masks per pair), where the dtype's range allows."""
        largest = self.problem.max_abs * self.scale.alpha
        pad = 2.0 * largest + 2048.0 / min(self.scale.ratios)
        masked = self.problem.kernel not in ("rbf", "laplacian") or not 4.0 * pad < torch.finfo(self.compute).max
        pads = [0.0, 0.0] if masked else [-pad, pad]
        return masked, torch.tensor(pads, dtype=self.compute, device=self.sorted.device)

    def tiles(self, block: int) -> Tiles:
        if block not in self._tiles:
            self._tiles[block] = Tiles.of(self.problem, block)
        return self._tiles[block]

    def launch(self, config: Config, need_sums: bool, need_grad: bool, weights=None):
        """(tile sums (T, BLOCK_M) or None, sum_j w t per sorted reward or None)."""
        tiles = self.tiles(config.block)
        n, num_bins = self.sorted.shape[0], self.problem.num_bins
        chunk = -(-tiles.count // min(config.chunks, tiles.count))
        num_chunks = -(-tiles.count // chunk)
        chunk_x, chunk_y = torch.triu_indices(num_chunks, num_chunks, device=self.sorted.device).to(torch.int32)
        block_m = max(16, 1 << (num_bins - 1).bit_length())
        device, f64 = self.sorted.device, torch.float64
        sums = torch.zeros((num_chunks, tiles.count, block_m) if need_sums else 1, dtype=f64, device=device)
        rows = torch.zeros((num_chunks, n) if need_grad else 1, dtype=f64, device=device)
        cols = torch.zeros_like(rows)
        self.module.pair_sweep[(chunk_x.shape[0],)](
            self.sorted, tiles.start, tiles.length, tiles.cell, tiles.next, tiles.end, chunk_x, chunk_y, self.ratios,
            weights if weights is not None else rows, n, num_bins, tiles.count, chunk, self.pads, sums, rows,
            cols, NEED_SUMS=need_sums, NEED_GRAD=need_grad, BLOCK=config.block, BLOCK_M=block_m,
            num_warps=config.num_warps, num_stages=config.num_stages, **self.constants,
        )
        return (sums.sum(0) if need_sums else None), (rows.sum(0) + cols.sum(0) if need_grad else None)

    def _run(self, need_sums: bool, need_grad: bool, pair_weights=None):
        problem = self.problem
        weights = None
        if need_grad:
            w = epilogue.sum_weights(pair_weights, problem.counts, problem.unbiased)
            weights = w.reshape(problem.num_groups * problem.num_bins, problem.num_bins).contiguous()
        config = self.config or _choose(self, need_sums, need_grad, weights)
        tile_sums, sorted_t = self.launch(config, need_sums, need_grad, weights)
        matrix = self._matrix(self.tiles(config.block).cell_sums(tile_sums)) if need_sums else None
        # d value / d u_i = 2 sum_j W[b_i, b_j] k'(u_i - u_j): k' odd and W symmetric
        return matrix, (self.finish_grad(2.0 * sorted_t) if need_grad else None)

    def _matrix(self, half_sums: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        sums = self.finish_sums(half_sums + half_sums.transpose(1, 2))  # each unordered pair was visited once
        matrix = epilogue.matrix_from_sums(sums, problem.counts, problem.unbiased, kernel_at_zero(problem.kernel))
        return matrix * self.scale.value_scale

    def matrix(self):
        return self._run(True, False)[0]

    def grad(self, pair_weights):
        return self._run(False, True, pair_weights)[1]

    def matrix_and_grad(self, pair_weights):
        return self._run(True, True, pair_weights)


@dataclass(frozen=True)
class Tiles:
    """The sorted rewards cut into tiles of at most ``block`` that each lie inside one cell, padded
    to a count that does not depend on the data (ceil(n / block) + G M), built on the device."""

    count: int
    num_groups: int
    num_bins: int
    start: torch.Tensor  # int32 first sorted position
    length: torch.Tensor  # int32, 0 for padding tiles
    per_cell: torch.Tensor  # int64 number of tiles of each cell
    cell: torch.Tensor  # int32 cell (G M for padding tiles)
    next: torch.Tensor  # int32 first tile of the next cell (the tile itself + 1 for padding)
    end: torch.Tensor  # int32 first tile past the tile's group (the tile itself + 1 for padding)

    @classmethod
    def of(cls, problem: Problem, block: int) -> Tiles:
        by_cell = problem.by_cell
        num_cells = problem.num_groups * problem.num_bins
        per_cell = (by_cell.counts + block - 1) // block
        last = torch.cumsum(per_cell, 0)
        first = torch.cat([last.new_zeros(1), last])  # first[c]: first tile of cell c; first[G M]: total
        count = -(-problem.rewards.shape[0] // block) + num_cells
        index = torch.arange(count, device=per_cell.device)
        cell = torch.searchsorted(last, index, right=True)
        valid = cell < num_cells
        inside = cell.clamp(max=num_cells - 1)
        offset = (index - first[inside]) * block
        length = torch.where(valid, (by_cell.counts[inside] - offset).clamp(0, block), 0)
        group_end = first[(inside // problem.num_bins + 1) * problem.num_bins]
        as32 = lambda values: values.to(torch.int32).contiguous()
        return cls(
            count=count,
            num_groups=problem.num_groups,
            num_bins=problem.num_bins,
            per_cell=per_cell,
            start=as32(torch.where(valid, by_cell.starts[inside] + offset, 0)),
            length=as32(length),
            cell=as32(torch.where(valid, cell, num_cells)),
            next=as32(torch.where(valid, first[inside + 1], index + 1)),
            end=as32(torch.where(valid, group_end, index + 1)),
        )

    def cell_sums(self, tile_sums: torch.Tensor) -> torch.Tensor:
        """(G, M, M) per-cell sums from per-tile ones (T, BLOCK_M): a cell's tiles are consecutive,
        and a segment reduction adds each segment in order (no atomics)."""
        lengths = torch.cat([self.per_cell, (self.count - self.per_cell.sum()).reshape(1)])
        per_cell = torch.segment_reduce(tile_sums, "sum", lengths=lengths, axis=0)[:-1]  # not the padding
        return per_cell[:, : self.num_bins].reshape(self.num_groups, self.num_bins, self.num_bins)


class _LinearSweep(_Sweep):
    """Two launches, one program per cell: the pair sums, then the gradient with the pair weights."""

    BLOCK = 64

    def __init__(self, problem: Problem, config: Config | None):
        super().__init__(problem, config)
        self.block = config.block if config else self.BLOCK
        self.starts = problem.by_cell.starts.to(torch.int32).contiguous()
        self.counts = problem.by_cell.counts.to(torch.int32).contiguous()

    def matrix(self):
        num_groups, num_bins = self.problem.num_groups, self.problem.num_bins
        out = torch.zeros(num_groups * num_bins * num_bins, dtype=self.compute, device=self.sorted.device)
        self.module.linear_pair_sums[(num_groups * num_bins,)](
            self.sorted, self.starts, self.counts, self.ratios, num_bins, out, BLOCK=self.block,
            **self.constants,
        )
        upper = out.reshape(num_groups, num_bins, num_bins)
        sums = self.finish_sums(upper + upper.transpose(1, 2))  # the kernel wrote p < q only
        return epilogue.linear_matrix(sums, self.problem.counts) * self.scale.value_scale

    def grad(self, pair_weights):
        weights = (pair_weights + pair_weights.transpose(1, 2)).to(self.compute).contiguous()
        sorted_t = torch.zeros_like(self.sorted)
        self.module.linear_grad[(self.problem.num_groups * self.problem.num_bins,)](
            self.sorted, self.starts, self.counts, self.ratios, weights, self.problem.num_bins, sorted_t,
            BLOCK=self.block, **self.constants,
        )
        return self.finish_grad(sorted_t)
