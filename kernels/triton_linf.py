"""ℓ∞-dist on Triton: Y[n, m] = max_k |x[n, k] − w[m, k]| and its arg-max k*, with autograd.

The forward is tiled like a matmul without tensor cores: each program owns a
BLOCK_M × BLOCK_N tile of outputs in registers and streams k, reading one
K-major row of x and of w per step (operands are transposed once, O((N + M)·K),
so those reads are contiguous). Compiled for sm_90 the k loop issues ~4.5
instructions per output element with the arg-max, ~2.5 without (see
benchmarks/sass_report.py), against a floor of 2 (subtract, max). Ties keep the
first k, as torch.max does, so value and index equal the pure-torch reference
bitwise. The backward sends g·sign(x − w) to coordinate k* only (see
``triton_scatter``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linfdist.kernels.contract import AbsDiff, differentiable
from linfdist.kernels.triton_common import (
    check_operands, compute_dtype, even_tiles, load_offsets, propagate_nan, store_tile, tile_configs,
)
from linfdist.kernels.triton_scatter import scatter_add_at_index, use_deterministic


@triton.jit
def max_dist_tile(X, W, offs_n, offs_m, N, M, K, stride_xn, stride_xk, stride_wm, stride_wk,
                  WITH_INDEX: tl.constexpr, EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    """(max_k |x − w|, first arg-max) over a [BLOCK_M, BLOCK_N] tile; the index is 0 unless WITH_INDEX.

    The tile is laid out m-major: a thread owns a few n (distinct, vector-loaded x) for
    all BLOCK_M weights (the same w for every thread: broadcast loads), so each k step
    costs about two loads per 16 outputs. The loop carries no masks (see load_offsets).
    """
    x_ptr = X + load_offsets(offs_n, N, EVEN)[None, :] * stride_xn
    w_ptr = W + load_offsets(offs_m, M, EVEN)[:, None] * stride_wm
    best = tl.zeros((BLOCK_M, BLOCK_N), dtype=X.dtype.element_ty)
    index = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, K):
        d = tl.abs(tl.load(x_ptr + k * stride_xk) - tl.load(w_ptr + k * stride_wk))
        if WITH_INDEX:
            take = d > best
            index = tl.where(take, k, index)
            best = tl.where(take, d, best)
        else:
            best = tl.maximum(best, d)
    return best, index


@triton.autotune(configs=tile_configs(), key=["N", "M", "K", "WITH_INDEX"])
@triton.heuristics({"EVEN": even_tiles})
@triton.jit
def _linf_forward_kernel(
    X, W, Y, IDX, N, M, K,
    stride_xn, stride_xk, stride_wm, stride_wk, stride_yn, stride_ym,
    WITH_INDEX: tl.constexpr, EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    best, index = max_dist_tile(X, W, offs_n, offs_m, N, M, K, stride_xn, stride_xk, stride_wm, stride_wk,
                                WITH_INDEX, EVEN, BLOCK_N, BLOCK_M)
    store_tile(Y, best, offs_n, offs_m, N, M, stride_yn, stride_ym)
    if WITH_INDEX:
        store_tile(IDX, index, offs_n, offs_m, N, M, stride_yn, stride_ym)


def k_major(t: torch.Tensor) -> torch.Tensor:
    """A [R, K] view whose k steps are rows of contiguous memory (one transposing copy if needed)."""
    return t if t.stride(0) == 1 else t.t().contiguous().t()


def linf_forward(x: torch.Tensor, w: torch.Tensor, with_index: bool):
    """(Y [N, M], k* [N, M] int32 or None) for x [N, K], w [M, K] of one float dtype."""
    n, k = x.shape
    m = w.shape[0]
    xs, ws = k_major(x), k_major(w)
    out = x.new_empty(n, m)
    index = torch.empty(n, m, dtype=torch.int32, device=x.device) if with_index else out
    if n and m:
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, meta["BLOCK_M"]))
        _linf_forward_kernel[grid](
            xs, ws, out, index, n, m, k,
            xs.stride(0), xs.stride(1), ws.stride(0), ws.stride(1), out.stride(0), out.stride(1),
            WITH_INDEX=with_index,
        )
    propagate_nan([out], rows=[x], cols=[w])
    return out, (index if with_index else None)


def backward_at_index(rule, w, inputs, index, grad_out, deterministic: bool):
    """Gradients (w, *inputs) of a max-type op: each output's gradient goes to its k* only.

    ``rule`` (a coordinate rule of ``contract``) gives the partial derivatives at the
    picked coordinate; the scatter runs on Triton. Same arithmetic and, with
    ``deterministic``, the same summation order as the pure-torch reference.
    """
    index64 = index.long()
    picked_w = w.t().gather(0, index64)
    picked_in = [t.gather(1, index64) for t in inputs]
    grads_in, total = [], 0
    for t, partial in zip(inputs, rule.partials(picked_w, *picked_in)):
        coef = grad_out * partial
        grads_in.append(scatter_add_at_index(torch.zeros_like(t), coef, index, 1.0, deterministic))
        total = total + coef
    grad_w = scatter_add_at_index(torch.zeros_like(w), total.t(), index.t(), -1.0, deterministic)
    return (grad_w, *grads_in)


class LinfDistFunction(torch.autograd.Function):
    """Y = ‖x[n] − w[m]‖∞ on Triton; the backward routes through the saved arg-max index."""

    @staticmethod
    def forward(ctx, x, w, deterministic, with_index):
        out, index = linf_forward(x, w, with_index)
        ctx.deterministic = deterministic
        if with_index:
            ctx.save_for_backward(x, w, index)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, w, index = ctx.saved_tensors
        grad_w, grad_x = backward_at_index(AbsDiff, w, [x], index, grad_out.contiguous(), ctx.deterministic)
        return grad_x, grad_w, None, None


def triton_linf_dist(x: torch.Tensor, w: torch.Tensor, deterministic: bool | None = None) -> torch.Tensor:
    """‖x[n] − w[m]‖∞ for x [N, K], w [M, K] → [N, M] on Triton, differentiable in both.

    float16/bfloat16 operands are computed in float32 and return float32.
    ``deterministic`` (default: torch's global flag) picks the reproducible backward.
    """
    check_operands(w, x)
    x, w = compute_dtype(x), compute_dtype(w)
    return LinfDistFunction.apply(x, w, use_deterministic(deterministic), differentiable(x, w))
