"""Robustness certificates computed in torch (float32, the training-side view).

- Margin certificate (plain nets): every logit is L-Lipschitz in ℓ∞, so the margin
  g_y − max_{j≠y} g_j can drop by at most 2·L·ε; certified iff margin > 2·L·ε.
- IBP: interval bounds through the net over the box [x − ε, x + ε] ∩ [0, 1];
  certified iff the true logit's lower bound exceeds every other upper bound.

Both subtract explicit float rounding allowances (``linfdist.rounding``), so a
certificate holds for exact arithmetic and for a float32 runtime alike. They need
p = ∞ on every layer. The independent verifier (``linfdist.verify``) re-derives
them from the exported graph without this code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linfdist.data import pixel_range_problem
from linfdist.errors import LinfdistError
from linfdist.rounding import unit_roundoff

RADIUS_BISECTION_STEPS = 12


@dataclass
class Certificates:
    """Per-sample results. A certificate is only issued for a correct prediction;
    ``margin_certified`` is None for nets without a margin certificate.

    ``radius`` is the margin certificate's radius for plain nets (IBP may certify a given
    ε beyond it) and the IBP radius, found by bisection, for nets with an MLP head.
    """

    predictions: torch.Tensor
    correct: torch.Tensor
    margin_certified: torch.Tensor | None
    ibp_certified: torch.Tensor
    radius: torch.Tensor

    @property
    def certified(self) -> torch.Tensor:
        """Proved robust by either certificate (each already implies a correct prediction)."""
        if self.margin_certified is None:
            return self.ibp_certified
        return self.ibp_certified | self.margin_certified


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """g_y − max_{j≠y} g_j per sample."""
    return interval_margin(logits, logits, labels)


def interval_margin(lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Worst-case margin from logit bounds: lower_y − max_{j≠y} upper_j."""
    true = lower.gather(1, labels[:, None]).squeeze(1)
    others = upper.scatter(1, labels[:, None], float("-inf"))
    return true - others.amax(1)


def logit_bounds(model, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 bounds on every logit a float runtime computes for pixel inputs within ℓ∞
    distance ε of x, clipped to [0, 1]; ``eps`` is a number or one value per sample."""
    if not hasattr(model, "logit_bounds"):
        raise TypeError(f"cannot certify a {type(model).__name__} (it has no logit_bounds)")
    return model.logit_bounds(x, eps)


def margin_radius(model, x: torch.Tensor, labels: torch.Tensor):
    """(logits, radius): the largest r with margin certified at every radius below it.

    A float runtime's margin at x' with ‖x' − x‖∞ ≤ r is at least
    m − u|m| − 2E(x) − 2L·r − 2(E(x) + S·u·L·r), where m is the computed margin, E(x) the
    rounding bound of this evaluation and S the rounding sites whose operands grow by
    at most L·r; solving for the r at which this reaches 0 gives the radius.
    """
    logits, err = model.forward_with_error(x)
    m = margin(logits, labels).double()
    u = unit_roundoff(logits.dtype)
    lip = model.lipschitz()
    sure = m - u * m.abs() - 4 * err
    radius = sure / (2 * lip * (1 + model.trunk.rounding_sites() * u))
    return logits, radius.clamp_min(0)


def check_pixels(x: torch.Tensor) -> None:
    """Refuse inputs outside the pixel domain [0, 1] the certificates are stated over, naming the fix."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise LinfdistError("pixels hold NaN or infinite values")
    problem = pixel_range_problem(float(x.min()), float(x.max())) if x.numel() else None
    if problem:
        raise LinfdistError(problem)


@torch.no_grad()
def certify(model, x: torch.Tensor, labels: torch.Tensor, eps: float) -> Certificates:
    """Certify one batch of pixel inputs x in [0, 1] at radius ε (model in eval mode, p = ∞)."""
    if eps < 0:
        raise LinfdistError(f"eps must be >= 0, got {eps}")
    check_pixels(x)
    was_training = model.training
    model.eval()
    try:
        mlp = not model.has_margin_certificate
        if mlp:
            logits = model(x)
        else:
            logits, margin_r = margin_radius(model, x, labels)
        predictions = logits.argmax(1)
        correct = predictions == labels
        ibp = interval_margin(*logit_bounds(model, x, eps), labels) > 0
        radius = _ibp_radius(model, x, labels) if mlp else margin_r
        radius = torch.where(correct, radius, torch.zeros_like(radius)).float()
        margin_cert = None if mlp else (margin_r > eps) & correct
        return Certificates(predictions, correct, margin_cert, ibp & correct, radius)
    finally:
        model.train(was_training)


def _ibp_radius(model, x, labels) -> torch.Tensor:
    """Largest ε (to 2^-12 of [0, 1]) that IBP certifies, by bisection per sample."""
    lo = torch.zeros(len(x))
    hi = torch.ones(len(x))
    for _ in range(RADIUS_BISECTION_STEPS):
        mid = (lo + hi) / 2
        lower, upper = logit_bounds(model, x, mid)
        ok = interval_margin(lower, upper, labels) > 0
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo
