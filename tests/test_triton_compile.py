"""The Triton kernels compile for a CUDA target (sm_90) down to a cubin, without a GPU: catches type
and layout errors that Triton's interpreter does not see, and checks the compiled code itself.

- every autotune candidate of the exact sweep compiles without register spills;
- the exact sweep's inner loop is exp-bound: for rbf at M = 30 at most 8 FP32 arithmetic
  instructions per ``ex2.approx`` in the PTX (the H100/H200 issue 8 FP32 operations per ex2 per
  clock: 128 FP32 lanes against 16 MUFU per SM), and no atomics anywhere (runs repeat bit for bit).

Skipped where triton's CUDA toolchain is missing. ``pytest tests/test_triton_compile.py -s`` prints
the counts.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
pytest.importorskip("torch")

import triton.language as tl
from causal_rewards.ops import triton_mmd
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)
FP32_ARITHMETIC = re.compile(r"^(add|sub|mul|fma|neg|abs|min|max|div|rcp|sqrt|rsqrt)(\.\w+)*\.f32$")
SWEEP_FLAGS = ["NUM_SCALES", "KERNEL", "DTYPE", "MASKED", "NEED_SUMS", "NEED_GRAD", "BLOCK", "BLOCK_M"]


def compile_for_cuda(fn, signature, constexprs, num_warps=4, num_stages=1):
    try:
        return triton.compile(
            ASTSource(fn=fn, signature=signature, constexprs=constexprs),
            target=TARGET,
            options={"num_warps": num_warps, "num_stages": num_stages},
        )
    except (FileNotFoundError, RuntimeError) as error:  # no ptxas / CUDA backend in this triton build
        if "ptxas" in str(error) or "backend" in str(error).lower():
            pytest.skip(f"triton cannot compile for CUDA here: {error}")
        raise


def compile_sweep(dtype=tl.float32, kernel=0, block=64, block_m=32, num_scales=1, sums=True, grad=True,
                  num_warps=4, num_stages=1):
    pointer = "*fp32" if dtype == tl.float32 else "*fp64"
    ints = ["tile_start_ptr", "tile_len_ptr", "tile_cell_ptr", "tile_next_ptr", "tile_end_ptr"]
    signature = {
        "u_ptr": pointer,
        **{name: "*i32" for name in ints + ["chunk_x_ptr", "chunk_y_ptr"]},
        "ratios_ptr": "*fp64",
        "weights_ptr": "*fp64",
        **{name: "i32" for name in ["n", "num_bins", "num_tiles", "chunk"]},
        "pads_ptr": pointer,
        **{name: "*fp64" for name in ["sums_ptr", "rows_ptr", "cols_ptr"]},
        **{name: "constexpr" for name in SWEEP_FLAGS},
    }
    values = [num_scales, kernel, dtype, kernel >= 2, sums, grad, block, block_m]
    constexprs = dict(zip(SWEEP_FLAGS, values))
    fn = triton_mmd.kernels(False).pair_sweep
    return compile_for_cuda(fn, signature, constexprs, num_warps=num_warps, num_stages=num_stages)


def inner_loop(ptx: str) -> list[str]:
    """The instructions of the innermost loop that holds an ex2: from the label LLVM marks as a loop
    header to the branch back to it."""
    lines = ptx.splitlines()
    loops = []
    for i, line in enumerate(lines):
        label = re.match(r"^(\$L__BB\d+_\d+):", line)
        if not label:
            continue
        comments = [line] + [c for c in lines[i + 1 : i + 4] if c.strip().startswith("//")]
        depth = re.search(r"Loop Header: Depth=(\d+)", " ".join(comments))
        back = [j for j in range(i + 1, len(lines)) if re.search(rf"\bbra(\.uni)?\s+{re.escape(label[1])};", lines[j])]
        if depth and back:
            loops.append((int(depth[1]), lines[i : back[-1] + 1]))
    with_exp = [(depth, body) for depth, body in loops if any("ex2.approx" in line for line in body)]
    return max(with_exp, key=lambda loop: loop[0])[1]


def opcodes(body: list[str]) -> collections.Counter:
    counts = collections.Counter()
    for line in body:
        text = re.sub(r"^@!?%p\d+\s+", "", line.strip())
        if text and not text.startswith(("//", ".", "$")) and not text.endswith(":"):
            counts[text.split()[0].rstrip(";")] += 1
    return counts


def exp_bound_counts(ptx: str) -> tuple[int, dict[str, int]]:
    counts = opcodes(inner_loop(ptx))
    exps = sum(v for k, v in counts.items() if k.startswith("ex2.approx"))
    return exps, {k: v for k, v in counts.items() if FP32_ARITHMETIC.match(k)}


def test_rbf_inner_loop_is_exp_bound():
    compiled = compile_sweep(kernel=0, block=64, block_m=32, num_warps=4)  # rbf, M = 30
    exps, arithmetic = exp_bound_counts(compiled.asm["ptx"])
    per_exp = sum(arithmetic.values()) / exps
    print(f"\nrbf, M = 30, BLOCK 64, 4 warps: {exps} ex2.approx, {arithmetic}: {per_exp:.2f} FP32 per ex2")
    assert exps > 0 and per_exp <= 8.0


def test_no_atomics_anywhere():
    for grad in (True, False):
        ptx = compile_sweep(kernel=1, sums=True, grad=grad).asm["ptx"]
        assert not re.search(r"^\s*(@!?%p\d+\s+)?(atom|red)\.", ptx, re.MULTILINE)


def _local_memory(cubin: bytes) -> int | None:
    """Bytes of local memory (register spills) per thread, from cuobjdump; None where it is missing."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    tool = str(tool) if tool.exists() else shutil.which("cuobjdump")
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        usage = subprocess.run([tool, "-res-usage", file.name], check=False, capture_output=True, text=True).stdout
    match = re.search(r"LOCAL:(\d+)", usage)
    return int(match[1]) if match else None


ALL_CANDIDATES = sorted(
    {c for n in (1024, 8192, 65536) for m in (2, 10, 30, 60) for g in (1, 2) for c in triton_mmd.candidates(n, g * m)},
    key=lambda c: (c.block, c.num_warps, c.num_stages),
)


@pytest.mark.parametrize("config", ALL_CANDIDATES, ids=lambda c: f"{c.block}x{c.num_warps}w{c.num_stages}s")
def test_autotune_candidates_compile_without_spills(config):
    compiled = compile_sweep(block=config.block, num_warps=config.num_warps, num_stages=config.num_stages)
    assert compiled.asm["cubin"]
    assert compiled.metadata.shared <= 227 * 1024  # fits an H100's shared memory per block
    local = _local_memory(compiled.asm["cubin"])
    assert local in (None, 0), f"{local} bytes of register spills per thread"


@pytest.mark.parametrize(
    "dtype,kernel,block_m,block,num_scales,sums,grad",
    [
        (tl.float32, 1, 256, 16, 2, True, True),  # laplacian, many bins, two bandwidths
        (tl.float64, 2, 16, 32, 1, True, False),  # imq (masked), the matrix alone
        (tl.float32, 3, 64, 64, 1, False, True),  # energy (masked), the max reduction's second pass
    ],
)
def test_sweep_variants_compile(dtype, kernel, block_m, block, num_scales, sums, grad):
    compiled = compile_sweep(dtype, kernel, block, block_m, num_scales, sums, grad)
    assert compiled.asm["cubin"]


@pytest.mark.parametrize("name", ["linear_pair_sums", "linear_grad"])
@pytest.mark.parametrize("dtype", [tl.float32, tl.float64])
def test_linear_kernels_compile(name, dtype):
    pointer = "*fp32" if dtype == tl.float32 else "*fp64"
    signature = {"sorted_ptr": pointer, "starts_ptr": "*i32", "counts_ptr": "*i32", "ratios_ptr": "*fp64"}
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
