"""Host side of the fused Triton kernels: launches, then the small M x M epilogue in float64.

Exact estimators (one launch, ``row_bin_sums``): tiles of (row block, column block) compute k and
dk/dr in registers and reduce them per row and per bin with a one-hot ``tl.dot`` against the
column block's bins, giving T[i, q] = sum_{j in (g_i, q)} k(r_i - r_j) and D[i, q], the same sum of
k'. The n x n matrix never exists; memory is O(n M). Then
    S_gpq = sum_{i in cell (g, p)} T[i, q],   MMD^2 from S and the counts (``epilogue``),
    value = sum_gpq w_gpq MMD^2_gpq,          W = d value / d S (``epilogue.sum_weights``),
    d value / d r_i = 2 sum_q W[g_i, b_i, q] D[i, q]       (k' is odd, W symmetric).
Linear estimator (two launches): ``linear_pair_sums`` for the matrix, then ``linear_grad`` with the
pair weights, each program owning one cell of the rewards sorted by cell (input order kept).

Kernels are evaluated in units of the smallest bandwidth (``scaling``). Accumulation is float64 for
float64 input and float32 otherwise (float16 / bfloat16 included). On CPU tensors the kernels run in
Triton's interpreter (slow; for tests).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from . import epilogue
from .problem import Problem
from .scaling import Scaling, kernel_at_zero, narrow

KERNEL_IDS = {"rbf": 0, "laplacian": 1, "imq": 2, "energy": 3}
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


def value_and_grad(problem: Problem, reduction: str, block: int | None = None):
    """(value in float64, d value / d rewards in the compute dtype) for a scalar reduction."""
    sweep = _sweep(problem, block)
    matrix = sweep.matrix()
    pair_weights = epilogue.reduction_weights(matrix, reduction)
    return epilogue.weighted_sum(matrix, pair_weights), sweep.grad(pair_weights)


def matrix(problem: Problem, block: int | None = None):
    """The (G, M, M) matrix (float64)."""
    return _sweep(problem, block).matrix()


def matrix_vjp(problem: Problem, upstream: torch.Tensor, block: int | None = None):
    """Gradient of sum(upstream * matrix) with respect to the rewards."""
    sweep = _sweep(problem, block)
    shape = (problem.num_groups, problem.num_bins, problem.num_bins)
    pair_weights = epilogue.fold_upstream(upstream.reshape(shape), problem.counts, problem.estimator)
    return sweep.grad(pair_weights)


def _sweep(problem: Problem, block: int | None):
    if problem.num_bins > MAX_BINS:
        raise ValueError(f"backend='triton' supports up to {MAX_BINS} bins, got num_bins={problem.num_bins}")
    return (_LinearSweep if problem.estimator == "linear" else _ExactSweep)(problem, block)


def _triton_dtype(dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


class _Sweep:
    """What both estimators share: the scaled rewards, the kernel module and the output scaling."""

    def __init__(self, problem: Problem, block: int | None):
        self.problem = problem
        self.scale = Scaling.of(problem.kernel, problem.bandwidths, problem.max_abs)
        self.compute = self.scale.dtype_for(problem.rewards.dtype, problem.max_abs)
        self.u = self.scale.apply(problem.rewards.detach(), self.compute).contiguous()
        self.module = kernels(interpret=problem.rewards.device.type == "cpu")
        self.block = block
        self.ratios = torch.tensor(self._kernel_scales(), dtype=torch.float64, device=self.u.device)
        self.constants = {
            "NUM_SCALES": self.ratios.shape[0],
            "KERNEL": KERNEL_IDS[problem.kernel],
            "DTYPE": _triton_dtype(self.compute),
        }

    def _kernel_scales(self) -> list[float]:
        """c_t with k = exp(-c_t d^2) (rbf), exp(-c_t |d|) (laplacian), (1 + c_t d^2)^(-1/2) (imq)."""
        if self.problem.kernel == "laplacian":
            return list(self.scale.ratios)
        half = 0.5 if self.problem.kernel == "rbf" else 1.0
        return [half * rho * rho for rho in self.scale.ratios]

    def narrow_grad(self, grad_u: torch.Tensor) -> torch.Tensor:
        """d value / d rewards from the gradient in units of u, in the compute dtype."""
        grad = grad_u.to(torch.float64) * self.scale.grad_scale
        return narrow(grad, self.compute, self.problem.bounds[1])


class _ExactSweep(_Sweep):
    def __init__(self, problem: Problem, block: int | None):
        super().__init__(problem, block)
        self._sums = None

    def _row_sums(self):
        """T and D (n, M) of the exact sweep (see the module docstring)."""
        if self._sums is None:
            problem = self.problem
            n, num_bins = problem.rewards.shape[0], problem.num_bins
            block_m = max(16, 1 << (num_bins - 1).bit_length())
            block_i = self.block or (64 if block_m <= 32 else (32 if block_m <= 128 else 16))
            block_j = self.block or 64
            sums = torch.empty((n, num_bins), dtype=self.compute, device=self.u.device)
            slopes = torch.empty_like(sums)
            bins32 = (problem.cells % num_bins).to(torch.int32).contiguous()
            groups32 = (problem.cells // num_bins).to(torch.int32).contiguous()
            self.module.row_bin_sums[(-(-n // block_i),)](
                self.u, bins32, groups32, self.ratios, n, num_bins, sums, slopes,
                HAS_GROUPS=problem.num_groups > 1, BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_M=block_m,
                num_warps=4 if block_m <= 64 else 8, **self.constants,
            )
            self._sums = sums, slopes
        return self._sums

    def matrix(self):
        problem = self.problem
        sums, _ = self._row_sums()
        num_groups, num_bins = problem.num_groups, problem.num_bins
        per_cell = torch.zeros((num_groups * num_bins, num_bins), dtype=torch.float64, device=sums.device)
        per_cell.index_add_(0, problem.cells, sums.to(torch.float64))
        matrix = epilogue.matrix_from_sums(
            per_cell.reshape(num_groups, num_bins, num_bins), problem.counts, problem.unbiased,
            kernel_at_zero(problem.kernel),
        )
        return matrix * self.scale.value_scale

    def grad(self, pair_weights):
        problem = self.problem
        _, slopes = self._row_sums()
        w = epilogue.sum_weights(pair_weights, problem.counts, problem.unbiased)
        w = w.reshape(problem.num_groups * problem.num_bins, problem.num_bins)
        return self.narrow_grad(2.0 * (w[problem.cells].to(slopes.dtype) * slopes).sum(dim=1))


class _LinearSweep(_Sweep):
    def __init__(self, problem: Problem, block: int | None):
        super().__init__(problem, block)
        by_cell = problem.by_cell
        self.sorted = self.u[by_cell.order].contiguous()
        self.starts = by_cell.starts.to(torch.int32).contiguous()
        self.counts = by_cell.counts.to(torch.int32).contiguous()
        self.block = block or 64

    def matrix(self):
        num_groups, num_bins = self.problem.num_groups, self.problem.num_bins
        out = torch.zeros(num_groups * num_bins * num_bins, dtype=self.compute, device=self.u.device)
        self.module.linear_pair_sums[(num_groups * num_bins,)](
            self.sorted, self.starts, self.counts, self.ratios, num_bins, out, BLOCK=self.block,
            **self.constants,
        )
        upper = out.reshape(num_groups, num_bins, num_bins).to(torch.float64)
        matrix = epilogue.linear_matrix(upper + upper.transpose(1, 2), self.problem.counts)  # p < q written
        return matrix * self.scale.value_scale

    def grad(self, pair_weights):
        weights = (pair_weights + pair_weights.transpose(1, 2)).to(self.compute).contiguous()
        grad_sorted = torch.zeros_like(self.sorted)
        self.module.linear_grad[(self.problem.num_groups * self.problem.num_bins,)](
            self.sorted, self.starts, self.counts, self.ratios, weights, self.problem.num_bins, grad_sorted,
            BLOCK=self.block, **self.constants,
        )
        return self.narrow_grad(self.problem.by_cell.unsort(grad_sorted))
