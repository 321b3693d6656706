"""Floating-point rounding allowances that keep torch certificates sound.

Model for one float32 operation: fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u = 2^-24 (sub, abs,
add and division are exactly rounded; max and negation are exact). An ℓ∞-dist
layer is 1-Lipschitz, so an error already in its input passes through unchanged
and each rounding adds at most u·|result|. Two kinds of allowance follow:

- ``widen``: step computed interval bounds outward by one ulp per rounding, so they
  contain the exact-arithmetic bounds (one ulp of a result exceeds u·|result|);
- per-sample additive bounds (float64) on how far a float32 runtime's logits can
  be from exact arithmetic, accumulated as Σ u·max|intermediate|.
"""

from __future__ import annotations

import torch


def unit_roundoff(dtype: torch.dtype) -> float:
    """u for a floating dtype (2^-24 for float32)."""
    return torch.finfo(dtype).eps / 2


def widen(lo: torch.Tensor, hi: torch.Tensor, roundings: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Move lo down and hi up by one ulp per rounding they went through."""
    for _ in range(roundings):
        lo = torch.nextafter(lo, torch.full_like(lo, float("-inf")))
        hi = torch.nextafter(hi, torch.full_like(hi, float("inf")))
    return lo, hi


def rounding_error(t: torch.Tensor, roundings: int = 1) -> torch.Tensor:
    """Per-sample bound (float64) on the rounding error of producing t [N, ...]: roundings·u·max|t|."""
    u = unit_roundoff(t.dtype)
    return roundings * u * t.detach().abs().reshape(t.shape[0], -1).amax(1).double()


def matmul_error(weight: torch.Tensor, magnitude: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Bound [N, M] (float64) on |fl(x Wᵀ + b) − (x Wᵀ + b)| for |x| ≤ magnitude [N, K]:
    γ_{K+1}·(|x||W|ᵀ + |b|) with γ_n = n·u / (1 − n·u) (any summation order)."""
    k = weight.shape[1] + 1
    u = unit_roundoff(weight.dtype)
    gamma = k * u / (1 - k * u)
    total = magnitude.double() @ weight.detach().double().abs().t()
    if bias is not None:
        total = total + bias.detach().double().abs()
    return gamma * total
