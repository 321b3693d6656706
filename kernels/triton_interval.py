"""Interval bounds of ℓ∞-dist on Triton: for l ≤ x ≤ u, lo ≤ ‖x − w[m]‖∞ ≤ hi, with autograd.

Per coordinate the largest distance over [l, u] is max(w − l, u − w) and the
smallest max(l − w, w − u, 0); one pass over k keeps both maxima and their first
arg-max, exactly as the pure-torch reference does (bitwise-equal bounds). The
backward sends each bound's gradient to its k* through the reference's own
partial-derivative rules and the shared scatter kernels, so IBP-based training
losses differentiate through it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linfdist.kernels.contract import LowerBound, UpperBound, check_box, differentiable
from linfdist.kernels.triton_common import (
    check_operands, compute_dtype, even_tiles, load_offsets, propagate_nan, store_tile, tile_configs,
)
from linfdist.kernels.triton_linf import backward_at_index, k_major
from linfdist.kernels.triton_scatter import use_deterministic


@triton.autotune(configs=tile_configs(max_cols=8), key=["N", "M", "K", "WITH_INDEX"])  # 16 spills
@triton.heuristics({"EVEN": even_tiles})
@triton.jit
def _linf_interval_kernel(
    L, U, W, LO, HI, IDX_LO, IDX_HI, N, M, K,
    stride_ln, stride_lk, stride_un, stride_uk, stride_wm, stride_wk, stride_on, stride_om,
    WITH_INDEX: tl.constexpr, EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    rows = load_offsets(offs_n, N, EVEN)[None, :]
    l_ptr = L + rows * stride_ln
    u_ptr = U + rows * stride_un
    w_ptr = W + load_offsets(offs_m, M, EVEN)[:, None] * stride_wm
    best_lo = tl.zeros((BLOCK_M, BLOCK_N), dtype=L.dtype.element_ty)
    best_hi = tl.zeros((BLOCK_M, BLOCK_N), dtype=L.dtype.element_ty)
    index_lo = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    index_hi = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, K):
        lk = tl.load(l_ptr + k * stride_lk)
        uk = tl.load(u_ptr + k * stride_uk)
        wk = tl.load(w_ptr + k * stride_wk)
        far = tl.maximum(wk - lk, uk - wk)
        near = tl.maximum(lk - wk, wk - uk)
        if WITH_INDEX:
            take_hi = far > best_hi
            take_lo = near > best_lo
            index_hi = tl.where(take_hi, k, index_hi)
            index_lo = tl.where(take_lo, k, index_lo)
            best_hi = tl.where(take_hi, far, best_hi)
            best_lo = tl.where(take_lo, near, best_lo)
        else:
            best_hi = tl.maximum(best_hi, far)
            best_lo = tl.maximum(best_lo, near)
    store_tile(LO, best_lo, offs_n, offs_m, N, M, stride_on, stride_om)
    store_tile(HI, best_hi, offs_n, offs_m, N, M, stride_on, stride_om)
    if WITH_INDEX:
        store_tile(IDX_LO, index_lo, offs_n, offs_m, N, M, stride_on, stride_om)
        store_tile(IDX_HI, index_hi, offs_n, offs_m, N, M, stride_on, stride_om)


def linf_interval_forward(lower: torch.Tensor, upper: torch.Tensor, w: torch.Tensor, with_index: bool):
    """(lo, hi, k*_lo, k*_hi) [N, M]; the indices are None unless ``with_index``."""
    n, k = lower.shape
    m = w.shape[0]
    ls, us, ws = k_major(lower), k_major(upper), k_major(w)
    lo, hi = lower.new_empty(n, m), lower.new_empty(n, m)
    index_lo, index_hi = (
        (torch.empty(n, m, dtype=torch.int32, device=w.device) for _ in range(2)) if with_index else (lo, hi)
    )
    if n and m:
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, meta["BLOCK_M"]))
        _linf_interval_kernel[grid](
            ls, us, ws, lo, hi, index_lo, index_hi, n, m, k,
            ls.stride(0), ls.stride(1), us.stride(0), us.stride(1), ws.stride(0), ws.stride(1),
            lo.stride(0), lo.stride(1), WITH_INDEX=with_index,
        )
    propagate_nan([lo, hi], rows=[lower, upper], cols=[w])
    return lo, hi, (index_lo if with_index else None), (index_hi if with_index else None)


class LinfIntervalFunction(torch.autograd.Function):
    """(lo, hi) of ‖x − w[m]‖∞ over the box [lower, upper] on Triton."""

    @staticmethod
    def forward(ctx, lower, upper, w, deterministic, with_index):
        lo, hi, index_lo, index_hi = linf_interval_forward(lower, upper, w, with_index)
        ctx.deterministic = deterministic
        ctx.set_materialize_grads(False)
        if with_index:
            ctx.save_for_backward(lower, upper, w, index_lo, index_hi)
        return lo, hi

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lo, grad_hi):
        lower, upper, w, index_lo, index_hi = ctx.saved_tensors
        total = None
        for rule, index, grad in ((LowerBound, index_lo, grad_lo), (UpperBound, index_hi, grad_hi)):
            if grad is None:
                continue
            grads = backward_at_index(rule, w, [lower, upper], index, grad.contiguous(), ctx.deterministic)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        if total is None:
            return None, None, None, None, None
        grad_w, grad_lower, grad_upper = total
        return grad_lower, grad_upper, grad_w, None, None


def triton_interval_linf_dist(lower: torch.Tensor, upper: torch.Tensor, w: torch.Tensor,
                              deterministic: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) with lo ≤ ‖x − w[m]‖∞ ≤ hi for every lower ≤ x ≤ upper, on Triton, differentiable."""
    check_operands(w, lower, upper)
    check_box(lower, upper)
    lower, upper, w = compute_dtype(lower), compute_dtype(upper), compute_dtype(w)
    return LinfIntervalFunction.apply(lower, upper, w, use_deterministic(deterministic), differentiable(lower, upper, w))
