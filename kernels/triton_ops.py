"""The Triton backend's entry points: ℓp-dist for any p and ℓ∞ interval bounds."""

from __future__ import annotations

import math

import torch

from linfdist.kernels.contract import check_p
from linfdist.kernels.triton_interval import triton_interval_linf_dist
from linfdist.kernels.triton_linf import triton_linf_dist
from linfdist.kernels.triton_lp import triton_lp_dist_finite


def lp_dist(x: torch.Tensor, w: torch.Tensor, p: float = math.inf, deterministic: bool | None = None) -> torch.Tensor:
    """Y[n, m] = ‖x[n] − w[m]‖_p for x [N, K], w [M, K], p ≥ 1 or inf, on Triton.

    CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. ``deterministic`` applies to
    p = ∞ (the finite-p backward has no atomics and is always reproducible).
    """
    p = check_p(p)
    if math.isinf(p):
        return triton_linf_dist(x, w, deterministic)
    return triton_lp_dist_finite(x, w, p)


def interval_lp_dist(lower: torch.Tensor, upper: torch.Tensor, w: torch.Tensor, p: float = math.inf,
                     deterministic: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) bounds of ‖x − w[m]‖∞ over lower ≤ x ≤ upper, on Triton (p = ∞ only)."""
    p = check_p(p)
    if not math.isinf(p):
        raise NotImplementedError(
            f"the Triton interval kernel covers p = inf only (got p = {p}); use backend='torch' for finite p"
        )
    return triton_interval_linf_dist(lower, upper, w, deterministic)
