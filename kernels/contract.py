"""The contract every ℓp-dist backend follows (pure torch, Triton, native): operand checks and the
coordinate rules.

Each operator reduces a per-coordinate distance D[n, m, k] ≥ 0 to Y[n, m] = ‖D[n, m, :]‖_p. A
*coordinate rule* says how D is built from the inputs (``dist``) and what its partial derivatives
are (``partials``): ``AbsDiff`` for the distance itself, ``UpperBound`` and ``LowerBound`` for the
bounds over an input box. At p = ∞ the gradient flows through the arg-max coordinate only
(``backward_at_index``).
"""

from __future__ import annotations

import math

import torch


def check_p(p: float) -> float:
    """Return p as a float, refusing values for which ‖·‖_p is not a norm."""
    p = float(p)
    if math.isnan(p) or p < 1.0:
        raise ValueError(f"p must be >= 1 or inf, got {p}")
    return p


def differentiable(*tensors: torch.Tensor) -> bool:
    """Whether autograd will want gradients: inside an autograd.Function's forward grad mode is
    off and ``needs_input_grad`` ignores torch.no_grad, so callers decide before apply."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def check_box(lower: torch.Tensor, upper: torch.Tensor) -> None:
    """Refuse an interval whose lower bound exceeds its upper bound anywhere."""
    if bool((lower > upper).any()):
        raise ValueError("interval lower bound exceeds upper bound")


def check_operands(weight: torch.Tensor, *inputs: torch.Tensor) -> None:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [M, K], got shape {tuple(weight.shape)}")
    for t in inputs:
        if t.dim() != 2 or t.shape[1] != weight.shape[1]:
            raise ValueError(
                f"input must be 2-D [N, {weight.shape[1]}] to match weight {tuple(weight.shape)}, "
                f"got shape {tuple(t.shape)}"
            )
        if t.shape != inputs[0].shape:
            raise ValueError(f"interval bounds differ in shape: {tuple(inputs[0].shape)} vs {tuple(t.shape)}")
        if t.dtype != weight.dtype or t.device != weight.device:
            raise ValueError(
                f"input ({t.dtype}, {t.device}) and weight ({weight.dtype}, {weight.device}) "
                "must share dtype and device"
            )
    if not weight.is_floating_point():
        raise TypeError(f"lp_dist needs floating-point tensors, got {weight.dtype}")


def _view(buffer, like_a, like_b):
    """``buffer`` (flat, or None) viewed as the broadcast shape of two operands, for ``out=``."""
    if buffer is None:
        return None
    shape = torch.broadcast_shapes(like_a.shape, like_b.shape)
    return buffer[: math.prod(shape)].view(shape)


class AbsDiff:
    """D = |x − w|: the plain ℓp distance."""

    #: One temporary, freshly allocated: measured faster here than a reused buffer.
    reuses_buffers = False

    @staticmethod
    def dist(w, x, buffers=(None, None)):
        return (x - w).abs_()

    @staticmethod
    def partials(w, x):
        return ((x - w).sign_(),)


class UpperBound:
    """D = max(|l − w|, |u − w|): the largest coordinate distance over the box [l, u]."""

    reuses_buffers = True

    @staticmethod
    def dist(w, l, u, buffers=(None, None)):
        a = torch.sub(l, w, out=_view(buffers[0], l, w)).abs_()
        return torch.maximum(a, torch.sub(u, w, out=_view(buffers[1], u, w)).abs_(), out=a)

    @staticmethod
    def partials(w, l, u):
        dl, du = l - w, u - w
        take_l = dl.abs() >= du.abs()
        return (dl.sign_() * take_l, du.sign_() * ~take_l)


class LowerBound:
    """D = max(0, l − w, w − u): the smallest coordinate distance over the box [l, u]."""

    reuses_buffers = True

    @staticmethod
    def dist(w, l, u, buffers=(None, None)):
        a = torch.sub(l, w, out=_view(buffers[0], l, w))
        return torch.maximum(a, torch.sub(w, u, out=_view(buffers[1], w, u)), out=a).clamp_min_(0)

    @staticmethod
    def partials(w, l, u):
        a, b = l - w, w - u
        from_l = (a >= b) & (a > 0)
        from_u = (b > a) & (b > 0)
        return (from_l.to(w.dtype), -from_u.to(w.dtype))


def backward_at_index(rule, w, inputs, index, grad_out):
    """p = ∞: the gradient flows through D[n, m, k*] only."""
    picked_w = w.t().gather(0, index)  # w[m, k*[n, m]]
    picked_in = [t.gather(1, index) for t in inputs]  # t[n, k*[n, m]]
    partials = rule.partials(picked_w, *picked_in)
    grads_in = [
        torch.zeros_like(t).scatter_add_(1, index, grad_out * dp) for t, dp in zip(inputs, partials)
    ]
    total = sum(grad_out * dp for dp in partials)
    grad_w = torch.zeros_like(w.t()).scatter_add_(0, index, -total).t()
    return (grad_w, *grads_in)
