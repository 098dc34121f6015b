"""The packed CPU kernel: its 2-bit weight layout, JIT build, and an exact torch fallback.

The C++ source (`ternary_kernel.cpp`, shipped as package data) is compiled on
first use with `torch.utils.cpp_extension.load` into the shared cache
(`envs.cache.cache_root()/torch_extensions`). It is built with -march=native
(`OEL_TERNARY_MARCH` names another, to measure the AVX2 path on a newer CPU):
the compile always happens on the machine that runs it, and the build folder
name hashes the source, the torch version, the compiler flags and the CPU's
feature flags, so a cache shared between different CPUs never hands one a
binary built for another. The kernel then picks AVX512-VNNI, AVX-VNNI, AVX2 or
plain C++ at compile time. `-ffp-contract=off` keeps the final scaling in the
same float32 operations as the torch reference.

If the build fails (no compiler, exotic platform) a warning says so and
`ternary_matmul` runs `reference_matmul`, a pure-torch path that gives the
same numbers (integer-valued float32 products are exact below 2^24), only slower.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from distill.ternary.quant import quantize_activations

BLOCK = 128
"""Columns per 32-byte block of the kernel layout; rows are zero-padded to a multiple of it."""
_SOURCE = Path(__file__).with_name("ternary_kernel.cpp")
MARCH_VARIABLE = "OEL_TERNARY_MARCH"
"""Environment variable naming the -march the kernel is built for (default native): x86-64-v3 builds the
AVX2 path on an AVX-512 machine, to measure what AVX2-only CPUs get (benchmarks/ternary.py)."""


def _cflags() -> list[str]:
    return ["-O3", f"-march={os.environ.get(MARCH_VARIABLE, 'native')}", "-ffp-contract=off", "-fopenmp"]


def kernel_layout(codes: torch.Tensor) -> torch.Tensor:
    """int8 ternary codes (out, in) -> uint8 (out, Kp/4) in the kernel's interleaved 2-bit layout."""
    out_f, in_f = codes.shape
    c = torch.nn.functional.pad(codes.to(torch.uint8) + 1, (0, -in_f % BLOCK), value=1)
    c = c.reshape(out_f, -1, 4, 32)
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    return packed.reshape(out_f, -1).contiguous()


def unpack_layout(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Inverse of `kernel_layout`: the int8 codes (out, in_features)."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
    c = (packed.reshape(packed.shape[0], -1, 1, 32) >> shifts[:, None]) & 3
    return (c.to(torch.int8) - 1).reshape(packed.shape[0], -1)[:, :in_features]


def reference_matmul(x: torch.Tensor, codes: torch.Tensor, wscale: torch.Tensor) -> torch.Tensor:
    """What the kernel computes, in torch: integer dot products of Q8(x) and codes, then / (sx * sw)."""
    xq, sx = quantize_activations(x, 8)
    acc = xq @ codes.float().T
    return (acc / (sx * wscale)).to(x.dtype)


def gemm_layout(codes: torch.Tensor) -> torch.Tensor:
    """int8 ternary codes (out, in) -> the C++ GEMM's operand (ceil(out/8), ceil(in/4), 32) uint8: codes + 1
    in blocks of 8 output columns, each 32-byte group holding the 8 columns' codes for 4 inputs
    (`ternary_kernel.cpp`, ternary_gemm). Padding is code 0; it meets zero activations or unused columns."""
    out_f, in_f = codes.shape
    c = torch.nn.functional.pad((codes + 1).to(torch.uint8), (0, -in_f % 4, 0, -out_f % 8))
    blocks = c.shape[0] // 8
    return c.reshape(blocks, 8, -1, 4).permute(0, 2, 1, 3).reshape(blocks, -1, 32).contiguous()


def int8_matmul(x: torch.Tensor, operand: torch.Tensor, wscale: torch.Tensor) -> torch.Tensor:
    """The same numbers as the kernel, for many rows: Q8(x) times the codes in one GEMM.

    The kernel walks each weight row over at most four tokens at a time, which
    wins at decode but not at prefill, where a batch of prompts puts hundreds of
    rows through every layer. There one GEMM multiplies the same integers,
    blocked for the cache, in one of three exact forms (`gemm_operand` picks):
    the C++ GEMM on `gemm_layout` (uint8 operand: quantization, integer sums and
    scaling in one op), torch's int8 GEMM (`torch._int_mm`, int32 sums; the
    operand is the int8 codes transposed), or an fp32 GEMM of the integer values
    (float32 operand), whose sums stay below 2^24 (|Q8(x)| <= 128 times codes in
    {-1, 0, 1} over at most 131072 inputs) and so are exact in any order. All
    equal `reference_matmul` and the kernel bit for bit. Around torch's GEMMs
    the quantization and the scaling run in the kernel's C++ (one pass each)
    when it is built, else as torch ops with the same numbers.
    """
    if operand.dtype == torch.uint8:
        return torch.ops.oel_ternary.ternary_gemm(x, operand, wscale)
    rows = x.reshape(-1, x.shape[-1])
    built = load_kernel() is not None
    xq, sx = torch.ops.oel_ternary.quantize_rows(rows) if built else quantize_activations(rows, 8)
    int8 = operand.dtype == torch.int8
    acc = torch._int_mm(xq.to(torch.int8), operand) if int8 else xq.float() @ operand
    out = torch.ops.oel_ternary.scale_rows(acc, sx, wscale) if built else acc.float() / (sx * wscale)
    return out.reshape(*x.shape[:-1], -1).to(x.dtype)


GEMMS = ("kernel", "int8", "fp32")
"""The prefill GEMM's forms: the C++ GEMM, torch's int8 GEMM, an fp32 GEMM of the integer values."""


@functools.cache
def fastest_gemm() -> str:
    """Which of `GEMMS` multiplies a prefill-sized batch fastest here: measured once per process.

    It depends on the CPU. oneDNN's int8 GEMM is fast where the CPU has the
    instructions it is tuned for (2-3x the C++ GEMM with AVX512-VNNI), and on an
    AMD EPYC with AVX2 only it ran 30x slower than MKL's fp32 GEMM; there the
    C++ GEMM's vpmaddubsw tiles are the fastest form (README, "Sparse-ternary
    students"). All forms give the same numbers, so the choice changes speed only.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 576, generator=g)  # a prefill's rows through SmolLM2's fused q, k, v
    codes = torch.randint(-1, 2, (960, 576), dtype=torch.int8, generator=g)
    wscale = torch.rand(960, generator=g) + 0.5
    forms = {"int8": codes.T, "fp32": codes.float().T}
    if load_kernel() is not None:
        forms["kernel"] = gemm_layout(codes)

    def best(operand: torch.Tensor) -> float:
        int8_matmul(x, operand, wscale)
        times = []
        for _ in range(3):
            began = time.perf_counter()
            int8_matmul(x, operand, wscale)
            times.append(time.perf_counter() - began)
        return min(times)

    return min(forms, key=lambda form: best(forms[form]))


def gemm_operand(codes: torch.Tensor) -> torch.Tensor:
    """The codes (out, in) as `int8_matmul`'s operand in the form `fastest_gemm` picked: `gemm_layout`, or
    a transposed (in, out) view of the int8 codes or of their float32 values."""
    form = fastest_gemm()
    if form == "kernel":
        return gemm_layout(codes)
    codes = codes.contiguous()
    return (codes if form == "int8" else codes.float()).T


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


@functools.cache
def load_kernel() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """Compile (first time) and load the C++ kernel; None, with a warning, if that fails."""
    from torch.utils.cpp_extension import load

    from envs.cache import cache_root

    source = _SOURCE.read_text()
    cflags = _cflags()
    digest = hashlib.sha256("\n".join([source, torch.__version__, " ".join(cflags), _cpu_flags()]).encode())
    name = f"oel_ternary_{digest.hexdigest()[:12]}"
    build_dir = cache_root() / "torch_extensions" / name
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        load(
            name=name,
            sources=[str(_SOURCE)],
            extra_cflags=cflags,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            is_python_module=False,
            verbose=False,
        )
        return torch.ops.oel_ternary.ternary_linear.default
    except Exception as err:  # any build or load failure means: fall back, loudly
        warnings.warn(
            f"the packed ternary CPU kernel failed to build ({type(err).__name__}: {err}); "
            "falling back to the much slower pure-torch path",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def simd_path() -> str:
    """The instruction set the kernel was compiled for ("avx512-vnni", "avx2", ...), or "torch" if none."""
    return "torch" if load_kernel() is None else torch.ops.oel_ternary.simd_path()


def ternary_matmul(
    x: torch.Tensor, packed: torch.Tensor, wscale: torch.Tensor, in_features: int
) -> torch.Tensor:
    """y (..., out) = W x in x's dtype, for x (..., in) and a kernel-layout matrix with per-row scales."""
    kernel = load_kernel()
    if kernel is not None:
        return kernel(x, packed, wscale)
    return reference_matmul(x, unpack_layout(packed, in_features), wscale)
