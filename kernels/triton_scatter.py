"""Scatter of per-output coefficients into input gradients: the backward of every max-type op.

For p = ∞ an output Y[r, s] depends on one coordinate k*[r, s] of its inputs, so a
gradient is OUT[r, k*[r, s]] += scale · C[r, s]. Two kernels compute it:

- ``atomic``: one atomic add per (r, s) — O(R·S) work, the fast default. Float
  atomics make the summation order (and so the last bits) vary between runs.
- ``onehot``: OUT[r, k] = Σ_s C[r, s]·[k*[r, s] = k], a dense matmul-shaped pass
  (O(R·S·K)) in a fixed order: bitwise reproducible, chosen when
  ``torch.are_deterministic_algorithms_enabled()``.

A sort-based segmented sum would also be deterministic, but it needs a sort of all
R·S keys per gradient, costlier than the atomics it replaces; the dense pass has
no data-dependent cost at all. Both kernels take strides, so the weight gradient
reads C and k* transposed without copies.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linfdist.kernels.triton_common import interpreting, load_offsets, tile_configs


def _atomic_configs() -> list[triton.Config]:
    """Elementwise tiles small enough that a thread's 64-bit addresses fit in registers."""
    if interpreting():
        return tile_configs("BLOCK_R", "BLOCK_S")
    return [triton.Config({"BLOCK_R": r, "BLOCK_S": c}, num_warps=4) for r, c in ((32, 64), (64, 64), (16, 128))]


@triton.autotune(configs=_atomic_configs(), key=["R", "S"], restore_value=["OUT"])
@triton.jit
def _scatter_atomic_kernel(
    C, IDX, OUT, scale, R, S,
    stride_cr, stride_cs, stride_ir, stride_is, stride_or, stride_ok,
    BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr,
):
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_s = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)
    mask = (offs_r < R)[:, None] & (offs_s < S)[None, :]
    rows = offs_r.to(tl.int64)[:, None]
    cols = offs_s.to(tl.int64)[None, :]
    c = tl.load(C + rows * stride_cr + cols * stride_cs, mask=mask, other=0.0)
    k = tl.load(IDX + rows * stride_ir + cols * stride_is, mask=mask, other=0)
    tl.atomic_add(OUT + rows * stride_or + k.to(tl.int64) * stride_ok, c * scale, mask=mask & (c != 0))


def even_onehot_tiles(args) -> bool:
    return args["R"] % args["BLOCK_R"] == 0 and args["K"] % args["BLOCK_K"] == 0


@triton.autotune(configs=tile_configs("BLOCK_K", "BLOCK_R"), key=["R", "S", "K"], restore_value=["OUT"])
@triton.heuristics({"EVEN": even_onehot_tiles})
@triton.jit
def _scatter_onehot_kernel(
    C, IDX, OUT, scale, R, S, K,
    stride_cr, stride_cs, stride_ir, stride_is, stride_or, stride_ok,
    EVEN: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """OUT[r, k] += scale · Σ_s C[r, s]·[IDX[r, s] = k], summed over s in order."""
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = load_offsets(offs_r, R, EVEN)
    acc = tl.zeros((BLOCK_R, BLOCK_K), dtype=OUT.dtype.element_ty)
    for s in range(0, S):
        c = tl.load(C + rows * stride_cr + s * stride_cs)
        k = tl.load(IDX + rows * stride_ir + s * stride_is)
        acc += tl.where(k[:, None] == offs_k[None, :], c[:, None], 0.0)
    out = OUT + offs_r.to(tl.int64)[:, None] * stride_or + offs_k.to(tl.int64)[None, :] * stride_ok
    mask = (offs_r < R)[:, None] & (offs_k < K)[None, :]
    tl.store(out, tl.load(out, mask=mask, other=0.0) + acc * scale, mask=mask)


def scatter_add_at_index(out: torch.Tensor, coef: torch.Tensor, index: torch.Tensor, scale: float,
                         deterministic: bool) -> torch.Tensor:
    """out[r, index[r, s]] += scale·coef[r, s] for out [R, K], coef and index [R, S] (in place)."""
    rows, cols = coef.shape
    if rows == 0 or cols == 0:
        return out
    if deterministic:
        grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(out.shape[1], meta["BLOCK_K"]))
        _scatter_onehot_kernel[grid](
            coef, index, out, scale, rows, cols, out.shape[1],
            coef.stride(0), coef.stride(1), index.stride(0), index.stride(1), out.stride(0), out.stride(1),
        )
    else:
        grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(cols, meta["BLOCK_S"]))
        _scatter_atomic_kernel[grid](
            coef, index, out, scale, rows, cols,
            coef.stride(0), coef.stride(1), index.stride(0), index.stride(1), out.stride(0), out.stride(1),
        )
    return out


def use_deterministic(deterministic: bool | None) -> bool:
    """The caller's choice, else torch's global deterministic-algorithms flag."""
    return torch.are_deterministic_algorithms_enabled() if deterministic is None else bool(deterministic)


__all__ = ["scatter_add_at_index", "use_deterministic"]
