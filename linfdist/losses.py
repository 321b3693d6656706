"""The papers' training losses, as the authors' code computes them.

Both work on the worst-case logits a 1-Lipschitz net can reach within ε of x: every logit
moves by at most L·ε (L = the input normalisation's Lipschitz constant, 1/std), so the
margin g_y − g_j can shrink by at most ``shift`` = 2·L·ε.

- ``v1_hinge_loss`` (zbh2047/L_inf-dist-net, main.py ``Loss(hinge(mix), kappa)``): the hinge on
  the worst-case margins g_j − g_y + shift (0 at the label), clamped at 0 and no clip, mixed
  ``mix``·(max over classes) + (1 − mix)·(mean over classes); with kappa < 1 the same hinge on
  the clean margins is mixed in. No cross-entropy, no logit scale.
- ``v2_mixture_loss`` (zbh2047/L_inf-dist-net-v2, main.py ``mixture`` on ell_inf_models.py's
  ``margin / (2 * eps)``): clamp(1 − margin / shift, 0, clip), the max over classes, plus
  λ·cross-entropy on the clean logits times a learnable scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from linfdist.certify import margin
from linfdist.errors import LinfdistError
from linfdist.schedules import ce_lambda_at, eps_at

LOSSES = ("v1", "v2")


def _class_margins(logits: torch.Tensor, labels: torch.Tensor, shift: float) -> torch.Tensor:
    """[N, C]: g_j − g_y + shift for j ≠ y, 0 at j = y (v1's BoundFinalIdentity output)."""
    true = logits.gather(1, labels[:, None])
    return (logits - true + shift).scatter(1, labels[:, None], 0.0)


def _hinge(margins: torch.Tensor, mix: float) -> torch.Tensor:
    """v1's ``hinge(mix)``: mix · mean of the per-sample max + (1 − mix) · mean of all, after clamping at 0."""
    positive = margins.clamp(min=0)
    return mix * positive.max(dim=1).values.mean() + (1 - mix) * positive.mean()


def v1_hinge_loss(logits: torch.Tensor, labels: torch.Tensor, shift: float, mix: float, kappa: float) -> torch.Tensor:
    """kappa · hinge(worst-case margins) + (1 − kappa) · hinge(clean margins)."""
    loss = kappa * _hinge(_class_margins(logits, labels, shift), mix)
    if kappa != 1:
        loss = loss + (1 - kappa) * _hinge(_class_margins(logits, labels, 0.0), mix)
    return loss


def v2_mixture_loss(logits: torch.Tensor, labels: torch.Tensor, shift: float, clip: float, ce_lambda: float,
                    scale: torch.Tensor) -> torch.Tensor:
    """mean clamp(1 − margin / shift, 0, clip) + λ · CE(scale · logits): every margin below ``shift``
    gets a gradient, and samples short of it by more than clip · shift get none."""
    if shift <= 0:
        raise LinfdistError("the v2 loss divides by 2·L·ε: it needs ε_train > 0 at every step")
    hinge = (1 - margin(logits, labels) / shift).clamp(0, clip).mean()
    return hinge + ce_lambda * F.cross_entropy(logits * scale, labels)


def training_loss(logits: torch.Tensor, labels: torch.Tensor, recipe, lipschitz: float, scale: torch.Tensor,
                  t: float) -> torch.Tensor:
    """The recipe's loss at position t of the run (ε and λ from their schedules)."""
    shift = 2 * lipschitz * eps_at(recipe, t)
    if recipe.loss == "v2":
        return v2_mixture_loss(logits, labels, shift, recipe.hinge_clip, ce_lambda_at(recipe, t), scale)
    return v1_hinge_loss(logits, labels, shift, recipe.hinge_mix, recipe.hinge_kappa)
