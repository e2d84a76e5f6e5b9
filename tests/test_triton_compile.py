"""The Triton kernels compile for a CUDA target (sm_90) down to a cubin, without a GPU: catches
type and layout errors that Triton's interpreter does not see. Skipped where triton's CUDA
toolchain is missing."""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")
pytest.importorskip("torch")

import triton.language as tl
from causal_rewards.ops import triton_mmd
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)


def compile_for_cuda(fn, signature, constexprs, num_warps=4):
    try:
        return triton.compile(
            ASTSource(fn=fn, signature=signature, constexprs=constexprs),
            target=TARGET,
            options={"num_warps": num_warps},
        )
    except (FileNotFoundError, RuntimeError) as error:  # no ptxas / CUDA backend in this triton build
        if "ptxas" in str(error) or "backend" in str(error).lower():
            pytest.skip(f"triton cannot compile for CUDA here: {error}")
        raise


@pytest.mark.parametrize(
    "dtype,kernel,block_m,block_i,has_groups",
    [(tl.float32, 0, 16, 64, True), (tl.float32, 1, 256, 16, False), (tl.float64, 2, 32, 64, True)],
)
def test_row_bin_sums_compiles(dtype, kernel, block_m, block_i, has_groups):
    pointer = "*fp32" if dtype == tl.float32 else "*fp64"
    signature = {
        "r_ptr": pointer,
        "bins_ptr": "*i32",
        "groups_ptr": "*i32",
        "scales_ptr": "*fp64",
        "n": "i32",
        "num_bins": "i32",
        "sums_ptr": pointer,
        "slopes_ptr": pointer,
        "NUM_SCALES": "constexpr",
        "KERNEL": "constexpr",
        "HAS_GROUPS": "constexpr",
        "DTYPE": "constexpr",
        "BLOCK_I": "constexpr",
        "BLOCK_J": "constexpr",
        "BLOCK_M": "constexpr",
    }
    constexprs = {
        "NUM_SCALES": 2,
        "KERNEL": kernel,
        "HAS_GROUPS": has_groups,
        "DTYPE": dtype,
        "BLOCK_I": block_i,
        "BLOCK_J": 64,
        "BLOCK_M": block_m,
    }
    compiled = compile_for_cuda(
        triton_mmd.kernels(False).row_bin_sums, signature, constexprs, num_warps=4 if block_m <= 64 else 8
    )
    assert compiled.asm["cubin"]
    assert compiled.metadata.shared <= 227 * 1024  # fits an H100's shared memory per block


@pytest.mark.parametrize("name", ["linear_pair_sums", "linear_grad"])
@pytest.mark.parametrize("dtype", [tl.float32, tl.float64])
def test_linear_kernels_compile(name, dtype):
    pointer = "*fp32" if dtype == tl.float32 else "*fp64"
    signature = {"sorted_ptr": pointer, "starts_ptr": "*i32", "counts_ptr": "*i32", "scales_ptr": "*fp64"}
    if name == "linear_grad":
        signature.update({"weights_ptr": pointer, "num_bins": "i32", "grad_ptr": pointer})
    else:
        signature.update({"num_bins": "i32", "out_ptr": pointer})
    signature.update(
        {"NUM_SCALES": "constexpr", "KERNEL": "constexpr", "DTYPE": "constexpr", "BLOCK": "constexpr"}
    )
    constexprs = {"NUM_SCALES": 1, "KERNEL": 3, "DTYPE": dtype, "BLOCK": 64}
    compiled = compile_for_cuda(getattr(triton_mmd.kernels(False), name), signature, constexprs)
    assert compiled.asm["cubin"]
