"""Functional ℓp-dist operators: the public entry points that pick a compute backend."""

from __future__ import annotations

import math

import torch

from linfdist import kernels
from linfdist.kernels import torch_dist

BACKENDS = ("auto", "torch", "torch-compile", "triton")


def _resolve(backend: str, t: torch.Tensor, triton_covers: bool = True) -> str:
    """The concrete backend: "auto" is Triton on CUDA tensors (where it has the op), else pure torch."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if t.is_cuda and triton_covers and kernels.triton_available() else "torch"
    return backend


def lp_dist(x: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto") -> torch.Tensor:
    """Y[n, m] = ‖x[n] − weight[m]‖_p for x [N, K], weight [M, K]; any p ≥ 1 or inf.

    Differentiable in both arguments; memory-bounded (never materialises N×M×K).
    ``backend``: "auto" (Triton on CUDA, pure torch on CPU), "torch" (pure-torch
    reference), "torch-compile" (the same code fused by torch.compile; CPU training
    speed-up) or "triton" (CUDA, or CPU under TRITON_INTERPRET=1).
    """
    backend = _resolve(backend, x)
    if backend == "triton":
        return kernels.lp_dist(x, weight, p)
    return torch_dist.torch_lp_dist(x, weight, p, compiled=backend == "torch-compile")


def interval_lp_dist(
    lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) with lo ≤ ‖x − weight[m]‖_p ≤ hi for every lower ≤ x ≤ upper.

    Per coordinate: hi_k = max(|l_k − w_k|, |u_k − w_k|), lo_k = max(0, l_k − w_k, w_k − u_k);
    the p-norm over k of each gives the bound (exact for p = ∞). The Triton kernel
    covers p = ∞; "auto" uses pure torch for finite p.
    """
    backend = _resolve(backend, lower, triton_covers=math.isinf(torch_dist.check_p(p)))
    if backend == "triton":
        return kernels.interval_lp_dist(lower, upper, weight, p)
    return torch_dist.torch_interval_lp_dist(lower, upper, weight, p, compiled=backend == "torch-compile")
