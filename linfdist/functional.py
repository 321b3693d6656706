"""Functional ℓp-dist operators: the public entry points that pick a compute backend."""

from __future__ import annotations

import math

import torch

from linfdist import kernels
from linfdist.kernels import native, torch_dist

BACKENDS = ("auto", "torch", "torch-compile", "triton", "native")


def _resolve(backend: str, t: torch.Tensor, triton_covers: bool = True) -> str:
    """The concrete backend: "auto" is Triton on CUDA tensors (where it has the op), the native
    kernels on float32 CPU tensors (where they were built), else pure torch."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if t.is_cuda:
        return "triton" if triton_covers and kernels.triton_available() else "torch"
    return "native" if t.dtype == torch.float32 and t.device.type == "cpu" and native.available() else "torch"


def lp_dist(x: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto") -> torch.Tensor:
    """Y[n, m] = ‖x[n] − weight[m]‖_p for x [N, K], weight [M, K]; any p ≥ 1 or inf.

    Differentiable in both arguments; memory-bounded (never materialises N×M×K).
    ``backend``: "auto" (Triton on CUDA, native on float32 CPU tensors, else pure torch),
    "torch" (pure-torch reference), "torch-compile" (the same code fused by torch.compile),
    "triton" (CUDA, or CPU under TRITON_INTERPRET=1) or "native" (the C kernels, float32 CPU).
    """
    backend = _resolve(backend, x)
    if backend == "triton":
        return kernels.lp_dist(x, weight, p)
    if backend == "native":
        return native.native_lp_dist(x, weight, p)
    return torch_dist.torch_lp_dist(x, weight, p, compiled=backend == "torch-compile")


def interval_lp_dist(
    lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) with lo ≤ ‖x − weight[m]‖_p ≤ hi for every lower ≤ x ≤ upper.

    Per coordinate: hi_k = max(|l_k − w_k|, |u_k − w_k|), lo_k = max(0, l_k − w_k, w_k − u_k);
    the p-norm over k of each gives the bound (exact for p = ∞). The Triton and native
    kernels cover p = ∞; finite p runs in pure torch.
    """
    backend = _resolve(backend, lower, triton_covers=math.isinf(torch_dist.check_p(p)))
    if backend == "triton":
        return kernels.interval_lp_dist(lower, upper, weight, p)
    if backend == "native":
        return native.native_interval_lp_dist(lower, upper, weight, p)
    return torch_dist.torch_interval_lp_dist(lower, upper, weight, p, compiled=backend == "torch-compile")
