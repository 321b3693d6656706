"""Shared plumbing of the Triton kernels: operand checks, launch configs, interpreter mode.

The kernels run compiled on CUDA tensors and, under ``TRITON_INTERPRET=1``, on CPU
tensors through Triton's interpreter (how CI checks the Triton code itself). The
environment variable must be set before this package's Triton modules are imported.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from linfdist.kernels.contract import check_operands as check_shapes_and_dtypes



def interpreting() -> bool:
    """True when Triton runs kernels through its numpy interpreter (TRITON_INTERPRET=1)."""
    return bool(triton.knobs.runtime.interpret)


def tile_configs(rows: str = "BLOCK_N", cols: str = "BLOCK_M", max_cols: int = 16,
                 interpreter_block: int = 32) -> list[triton.Config]:
    """Autotune candidates for an output tile: ``rows`` spread over threads, ``cols`` in each thread.

    A thread holds rows/(32·warps) × cols outputs; 4 × 16 keeps the k loop at about 17
    loads per 64 elements without spilling registers (checked in the compiled code, see
    benchmarks/sass_report.py); kernels with more live state per output cap
    ``max_cols``. The interpreter gets one small tile: no benchmarking, and small test
    operands still span several tiles.
    """
    if interpreting():
        return [triton.Config({rows: interpreter_block, cols: interpreter_block})]
    return [
        triton.Config({rows: r, cols: c}, num_warps=warps)
        for r, c, warps in ((256, 16, 2), (128, 16, 1), (512, 16, 4), (256, 8, 2), (128, 8, 1))
        if c <= max_cols
    ]


@triton.jit
def load_offsets(offs, size, EVEN: tl.constexpr):
    """Row offsets safe to load without a mask: out-of-range rows read row 0 (never stored)."""
    if EVEN:
        safe = offs
    else:
        safe = tl.where(offs < size, offs, 0)
    return safe.to(tl.int64)


@triton.jit
def store_tile(Y, value, offs_n, offs_m, N, M, stride_yn, stride_ym):
    """Store a [BLOCK_M, BLOCK_N] tile to Y[n, m], masking rows past N and M."""
    offs = offs_n.to(tl.int64)[None, :] * stride_yn + offs_m.to(tl.int64)[:, None] * stride_ym
    tl.store(Y + offs, value, mask=(offs_n < N)[None, :] & (offs_m < M)[:, None])


def even_tiles(args) -> bool:
    """True when N and M are multiples of the tile, so no row needs clamping."""
    return args["N"] % args["BLOCK_N"] == 0 and args["M"] % args["BLOCK_M"] == 0


def check_device(*tensors: torch.Tensor) -> None:
    """Refuse tensors the Triton kernels cannot run on, saying what would work."""
    for t in tensors:
        if t.device.type == "cuda":
            continue
        if t.device.type == "cpu" and interpreting():
            continue
        raise RuntimeError(
            f"Triton kernels need CUDA tensors (got a {t.device.type} tensor); use backend='torch' "
            "on CPU, or set TRITON_INTERPRET=1 before importing linfdist to run them through "
            "Triton's (slow) interpreter"
        )


def check_operands(weight: torch.Tensor, *inputs: torch.Tensor) -> None:
    """The reference's shape and dtype checks, then the device the kernels need; one-line errors."""
    check_shapes_and_dtypes(weight, *inputs)
    if weight.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"lp_dist kernels need float16/bfloat16/float32/float64 tensors, got {weight.dtype}")
    check_device(weight, *inputs)


def compute_dtype(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 operands are computed (and accumulated) in float32; autograd casts grads back."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


#: Integer exponents up to this are compiled into their own chain of multiplies; larger ones take the
#: exp2/log2 path, as other p do: a constexpr per integer p would compile and autotune each kernel
#: anew for every integer an annealing schedule passes (1008 of them from 17 to 1024).
UNROLLED_EXPONENT_MAX = 16


def integer_exponent(e: float) -> tuple[int, int]:
    """(E, bits of E) for a power r**e: E = e when e is an integer in [0, UNROLLED_EXPONENT_MAX] (the
    repeated-squaring path, exact up to rounding), else E = -1 (exp2/log2 path)."""
    exponent = int(e) if e == int(e) and 0 <= e <= UNROLLED_EXPONENT_MAX else -1
    return exponent, max(exponent, 0).bit_length()


def propagate_nan(outs: list[torch.Tensor], rows: list[torch.Tensor], cols: list[torch.Tensor]) -> None:
    """Make each out[n, m] NaN (in place) where row n of a ``rows`` operand or row m of a ``cols``
    operand holds a NaN.

    The kernels' max reductions skip NaN (a comparison with NaN is false); a NaN must
    surface in the output instead of being silently dropped. Costs O((N + M)·K + N·M)
    and no host sync; the masks are computed once for all outputs.
    """
    bad_rows = torch.stack([torch.isnan(t).any(1) for t in rows]).any(0)
    bad_cols = torch.stack([torch.isnan(t).any(1) for t in cols]).any(0)
    mask = bad_rows[:, None] | bad_cols[None, :]
    for out in outs:
        out.masked_fill_(mask, math.nan)


__all__ = [
    "check_operands", "compute_dtype", "even_tiles", "integer_exponent", "interpreting", "load_offsets",
    "propagate_nan", "store_tile", "tile_configs",
]
