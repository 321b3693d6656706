"""Functional ℓp-dist operators: the public entry points that pick a compute backend."""

from __future__ import annotations

import math

import torch

from linfdist.kernels import torch_dist

BACKENDS = ("auto", "torch", "torch-compile")


def _use_compiled(backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend == "torch-compile"


def lp_dist(x: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto") -> torch.Tensor:
    """Y[n, m] = ‖x[n] − weight[m]‖_p for x [N, K], weight [M, K]; any p ≥ 1 or inf.

    Differentiable in both arguments; memory-bounded (never materialises N×M×K).
    ``backend``: "auto" (best available), "torch" (pure-torch reference) or
    "torch-compile" (the same code fused by torch.compile; CPU training speed-up).
    """
    return torch_dist.torch_lp_dist(x, weight, p, compiled=_use_compiled(backend))


def interval_lp_dist(
    lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor, p: float = math.inf, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) with lo ≤ ‖x − weight[m]‖_p ≤ hi for every lower ≤ x ≤ upper.

    Per coordinate: hi_k = max(|l_k − w_k|, |u_k − w_k|), lo_k = max(0, l_k − w_k, w_k − u_k);
    the p-norm over k of each gives the bound (exact for p = ∞).
    """
    return torch_dist.torch_interval_lp_dist(lower, upper, weight, p, compiled=_use_compiled(backend))
