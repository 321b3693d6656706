"""Training schedules as functions of the position t in the run, in epochs (epoch + step / steps).

They follow the authors' ``create_schedule`` (v1 main.py and v2 main.py), which move every
quantity per minibatch along the fraction of its phase already done:

- p: p_start while t < p_warm_epochs, then geometric to p_end over the annealing phase, then ∞
  for the last p_inf_epochs. ``p_schedule = "per-step"`` is the authors' continuous p;
  "per-epoch" holds p for ``p_update_epochs`` epochs (fewer distinct p values, for backends
  that compile one kernel per p) and reaches p_end in the last annealing epoch.
- λ (the v2 cross-entropy weight): λ_start while p = p_start, geometric to λ_end over the
  annealing phase, λ_end while p = ∞ (v2's ``mixture.update`` takes the p phase's ratio).
- ε: linear from 0 to ε_train over eps_ramp_epochs (v1's ratio over ``epoch2``; 0 = full ε).
- learning rate: constant for lr_hold_epochs (v1: the p = 8 epochs), then cosine to lr_final
  at the end of the run (v2: no hold). Every parameter group follows the same factor.
"""

from __future__ import annotations

import math

P_SCHEDULES = ("per-step", "per-epoch")


def anneal_ratio(recipe, t: float) -> float:
    """How far through the p-annealing phase t is: 0 before it, 1 after it (the authors' ``cal_ratio``)."""
    start, end = recipe.p_warm_epochs, recipe.epochs - recipe.p_inf_epochs
    if end <= start:
        return 1.0 if t >= end else 0.0
    return min(max((t - start) / (end - start), 0.0), 1.0)


def p_at(recipe, t: float) -> float:
    """The p of every ℓp-dist layer at position t."""
    if t >= recipe.epochs - recipe.p_inf_epochs:
        return math.inf
    if recipe.p_schedule == "per-step":
        ratio = anneal_ratio(recipe, t)
    else:
        span = max(recipe.epochs - recipe.p_inf_epochs - recipe.p_warm_epochs, 1)
        stage = (math.floor(t) - recipe.p_warm_epochs) // recipe.p_update_epochs * recipe.p_update_epochs
        ratio = min(max(stage / max(span - recipe.p_update_epochs, 1), 0.0), 1.0)
    p = recipe.p_start * math.exp(math.log(recipe.p_end / recipe.p_start) * ratio)
    return float(round(p)) if recipe.p_integer else p


def ce_lambda_at(recipe, t: float) -> float:
    """v2's cross-entropy weight λ at position t (geometric over the p-annealing phase)."""
    ratio = anneal_ratio(recipe, t)
    return recipe.ce_lambda_start * math.exp(math.log(recipe.ce_lambda_end / recipe.ce_lambda_start) * ratio)


def eps_at(recipe, t: float) -> float:
    """The training radius at position t: linear ramp from 0 over eps_ramp_epochs."""
    if recipe.eps_ramp_epochs <= 0:
        return recipe.eps_train
    return recipe.eps_train * min(1.0, t / recipe.eps_ramp_epochs)


def lr_at(recipe, t: float) -> float:
    """The learning rate at position t: held for lr_hold_epochs, then cosine to lr_final at the end."""
    hold = recipe.lr_hold_epochs
    ratio = max((t - hold) / (recipe.epochs - hold), 0.0) if recipe.epochs > hold else 1.0
    return recipe.lr_final + 0.5 * (recipe.lr - recipe.lr_final) * (1 + math.cos(math.pi * min(ratio, 1.0)))


def lr_factor(recipe, t: float) -> float:
    """lr_at(t) / lr: the factor every parameter group's base rate is multiplied by at t."""
    return lr_at(recipe, t) / recipe.lr if recipe.lr > 0 else 1.0
