"""ℓp-dist for finite p on Triton: Y[n, m] = (Σ_k |x[n, k] − w[m, k]|^p)^(1/p), with autograd.

Stable for p in the thousands: a first pass over k finds each output's largest
coordinate distance D* (the ℓ∞ kernel's tile loop), the second sums (|d|/D*)^p ≤ 1
and returns D*·s^(1/p). Integer exponents up to 16 use repeated squaring (a
compile-time unrolled chain of multiplies; even p skips the abs); other p use
exp2(p·log2 r), which on GPU is the hardware approximation (relative error
~1e-4 in a term at p = 1000, ~p times less in Y): one compiled kernel for every p
above 16, where a chain per integer p would compile and autotune anew for each
integer an annealing schedule passes, and costs more instructions per element
(docs/performance.md). The backward is two
matmul-shaped passes, ∂Y/∂x[n, k] = Σ_m g·sign(d)·(|d|/Y)^(p−1), one per operand,
by the same kernel with the operands' roles (and strides) swapped.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from linfdist.kernels.triton_common import (
    check_operands, compute_dtype, even_tiles, integer_exponent, interpreting, load_offsets, propagate_nan, store_tile,
    tile_configs,
)
from linfdist.kernels.triton_linf import k_major, max_dist_tile

#: Smallest normal float32: divisors are clamped to it so a reciprocal never overflows.
_TINY = tl.constexpr(1.1754943508222875e-38)
#: Compiled code takes the hardware log2 (lg2.approx; libdevice's accurate log2f is a
#: ~25-instruction polynomial); the interpreter cannot call libdevice and uses numpy's.
_FAST_LOG2 = tl.constexpr(not interpreting())


@triton.jit
def power01(r, e, E_INT: tl.constexpr, E_BITS: tl.constexpr):
    """r**e for r in [0, 1]: repeated squaring when E_INT ≥ 0 (then e == E_INT), else exp2(e·log2 r)."""
    if E_INT < 0:
        log2_r = tl.log2(r)
        if _FAST_LOG2:
            if r.dtype == tl.float32:  # lg2.approx is float32-only; float64 keeps tl.log2
                log2_r = libdevice.fast_log2f(r)
        result = tl.exp2(e * log2_r)
    elif E_INT == 0:
        result = tl.full(r.shape, 1.0, r.dtype)
    else:
        result = r
        for i in tl.static_range(E_BITS - 1):
            result = result * result
            if (E_INT >> (E_BITS - 2 - i)) & 1:
                result = result * r
    return result


@triton.autotune(configs=tile_configs(), key=["N", "M", "K", "E_INT"])
@triton.heuristics({"EVEN": even_tiles})
@triton.jit
def _lp_forward_kernel(
    X, W, Y, N, M, K, p, inv_p,
    stride_xn, stride_xk, stride_wm, stride_wk, stride_yn, stride_ym,
    E_INT: tl.constexpr, E_BITS: tl.constexpr, EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    peak, _ = max_dist_tile(X, W, offs_n, offs_m, N, M, K, stride_xn, stride_xk, stride_wm, stride_wk,
                            False, EVEN, BLOCK_N, BLOCK_M)
    norm = tl.maximum(peak, _TINY)
    scale = 1.0 / norm
    x_ptr = X + load_offsets(offs_n, N, EVEN)[None, :] * stride_xn
    w_ptr = W + load_offsets(offs_m, M, EVEN)[:, None] * stride_wm
    total = tl.zeros((BLOCK_M, BLOCK_N), dtype=X.dtype.element_ty)
    for k in range(0, K):
        d = tl.load(x_ptr + k * stride_xk) - tl.load(w_ptr + k * stride_wk)
        if E_INT < 0 or E_INT % 2 == 1:
            d = tl.abs(d)
        total += power01(d * scale, p, E_INT, E_BITS)
    out = tl.maximum(norm * tl.exp2(inv_p * tl.log2(total)), peak)  # ‖·‖_p ≥ ‖·‖∞ despite rounding
    store_tile(Y, out, offs_n, offs_m, N, M, stride_yn, stride_ym)


def even_backward_tiles(args) -> bool:
    return args["NA"] % args["BLOCK_A"] == 0 and args["K"] % args["BLOCK_K"] == 0


@triton.autotune(configs=tile_configs("BLOCK_K", "BLOCK_A"), key=["NA", "NB", "K", "E_INT"])
@triton.heuristics({"EVEN": even_backward_tiles})
@triton.jit
def _lp_backward_kernel(
    A, B, G, INV, OUT, NA, NB, K, e,
    stride_ar, stride_ak, stride_br, stride_bk, stride_ga, stride_gb, stride_ia, stride_ib, stride_or, stride_ok,
    E_INT: tl.constexpr, E_BITS: tl.constexpr, EVEN: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """OUT[a, k] = Σ_b G[a, b]·sign(A[a, k] − B[b, k])·(|A[a, k] − B[b, k]|·INV[a, b])^e, INV = 1/Y.

    Tile [BLOCK_A, BLOCK_K]: every thread holds all BLOCK_A rows (G and INV are broadcast
    loads) for a few k (a vector load of B's row). For e > 0 the term is 0 at d = 0, so
    the sign is d's sign bit, applied with one xor (float32); e = 0 (p = 1) needs sign(0) = 0.
    """
    offs_a = tl.program_id(0) * BLOCK_A + tl.arange(0, BLOCK_A)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = load_offsets(offs_a, NA, EVEN)
    cols = load_offsets(offs_k, K, EVEN)
    a = tl.load(A + rows[:, None] * stride_ar + cols[None, :] * stride_ak)
    acc = tl.zeros((BLOCK_A, BLOCK_K), dtype=OUT.dtype.element_ty)
    for b in range(0, NB):
        row_b = tl.load(B + b * stride_br + cols * stride_bk)
        g = tl.load(G + rows * stride_ga + b * stride_gb)
        inv = tl.load(INV + rows * stride_ia + b * stride_ib)
        d = a - row_b[None, :]
        term = power01(tl.abs(d) * inv[:, None], e, E_INT, E_BITS) * g[:, None]
        if E_INT == 0 or A.dtype.element_ty != tl.float32:
            acc += tl.where(d > 0, term, tl.where(d < 0, -term, 0.0))
        else:
            sign = d.to(tl.int32, bitcast=True) & -2147483648
            acc += (term.to(tl.int32, bitcast=True) ^ sign).to(tl.float32, bitcast=True)
    store_tile(OUT, acc, offs_k, offs_a, K, NA, stride_ok, stride_or)


def lp_forward(x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """Y [N, M] for finite p ≥ 1."""
    n, k = x.shape
    m = w.shape[0]
    xs, ws = k_major(x), k_major(w)
    out = x.new_empty(n, m)
    if n and m:
        e_int, e_bits = integer_exponent(p)
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, meta["BLOCK_M"]))
        _lp_forward_kernel[grid](
            xs, ws, out, n, m, k, float(p), 1.0 / float(p),
            xs.stride(0), xs.stride(1), ws.stride(0), ws.stride(1), out.stride(0), out.stride(1),
            E_INT=e_int, E_BITS=e_bits,
        )
    propagate_nan([out], rows=[x], cols=[w])
    return out


def lp_backward_operand(a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor, inv: torch.Tensor, p: float):
    """The gradient for operand ``a`` ([R, K]) given the other operand ``b``, and grad and 1/Y laid out [R, S]."""
    rows, k = a.shape
    result = torch.empty_like(a, memory_format=torch.contiguous_format)
    if rows and k:
        e_int, e_bits = integer_exponent(p - 1.0)
        grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_A"]), triton.cdiv(k, meta["BLOCK_K"]))
        _lp_backward_kernel[grid](
            a, b, grad, inv, result, rows, b.shape[0], k, float(p - 1.0),
            a.stride(0), a.stride(1), b.stride(0), b.stride(1), grad.stride(0), grad.stride(1),
            inv.stride(0), inv.stride(1), result.stride(0), result.stride(1),
            E_INT=e_int, E_BITS=e_bits,
        )
    return result


class LpDistFunction(torch.autograd.Function):
    """Y = ‖x[n] − w[m]‖_p on Triton for finite p; the backward recomputes distances."""

    @staticmethod
    def forward(ctx, x, w, p):
        out = lp_forward(x, w, p)
        ctx.p = p
        ctx.save_for_backward(x, w, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, w, out = ctx.saved_tensors
        inv = torch.where(out > 0, 1.0 / out.clamp_min(_TINY.value), 0.0)
        grad_x = lp_backward_operand(x, w, grad_out, inv, ctx.p) if ctx.needs_input_grad[0] else None
        grad_w = lp_backward_operand(w, x, grad_out.t(), inv.t(), ctx.p) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


def triton_lp_dist_finite(x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """‖x[n] − w[m]‖_p for finite p ≥ 1 on Triton, differentiable in both operands."""
    check_operands(w, x)
    return LpDistFunction.apply(compute_dtype(x), compute_dtype(w), float(p))
