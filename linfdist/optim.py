"""The optimiser of a training run: Adam plus v1's decoupled ℓp weight decay.

v1 (zbh2047/L_inf-dist-net, adamw.py) shrinks every parameter before each Adam step, by
lr · weight_decay along the gradient of ½‖row‖_p² for each row of an ℓp-dist layer's
parameters (at the layer's current p; at p = ∞ only each row's largest entry; a bias has rows
of one entry), and elementwise for everything else. v2 trains without weight decay.
"""

from __future__ import annotations

import math

import torch

from linfdist.nn import LpDistLinear


@torch.no_grad()
def lp_row_decay_(weight: torch.Tensor, p: float, amount: float, eps: float) -> None:
    """w ← w − amount · ∇(½‖w_row‖_p²) for each row, as v1's AdamW computes it (eps keeps 0 ** negative
    finite)."""
    rows = weight.view(weight.shape[0], -1)
    if math.isinf(p):
        index = rows.abs().argmax(dim=1, keepdim=True)
        rows.scatter_add_(1, index, -amount * rows.gather(1, index))
        return
    squares = rows * rows + eps
    squares = squares / squares.amax(dim=1, keepdim=True)
    powers = squares.pow(p / 2 - 1)
    total = (squares * powers).sum(dim=1, keepdim=True)
    rows.addcmul_(total.pow(2 / p - 1) * powers, rows, value=-amount)


class DecoupledLpDecay:
    """Applies v1's weight decay to a model's parameters that have a gradient, at a given lr."""

    def __init__(self, model: torch.nn.Module, weight_decay: float, eps: float):
        self.weight_decay, self.eps = weight_decay, eps
        self.layers = {id(q): m for m in model.modules() if isinstance(m, LpDistLinear) for q in m.parameters()}
        self.params = list(model.parameters())

    @torch.no_grad()
    def step(self, lr: float) -> None:
        if self.weight_decay == 0:
            return
        amount = lr * self.weight_decay
        for param in self.params:
            if param.grad is None:
                continue
            layer = self.layers.get(id(param))
            if layer is None:
                param.mul_(1 - amount)
            else:
                lp_row_decay_(param, layer.p, amount, self.eps)


def make_optimizer(model: torch.nn.Module, recipe) -> tuple[torch.optim.Adam, torch.nn.Parameter, DecoupledLpDecay]:
    """Adam over the model and a logit scale (v2's ``scalar``, its own learning rate), each group
    remembering its base rate in ``base_lr``; and the decoupled decay step."""
    device = next(model.parameters()).device
    scale = torch.nn.Parameter(torch.full((), float(recipe.logit_scale), device=device))
    optimizer = torch.optim.Adam(
        [{"params": list(model.parameters()), "base_lr": recipe.lr},
         {"params": [scale], "lr": recipe.logit_scale_lr, "base_lr": recipe.logit_scale_lr}],
        lr=recipe.lr, betas=tuple(recipe.adam_betas), eps=recipe.adam_eps,
    )
    return optimizer, scale, DecoupledLpDecay(model, recipe.weight_decay, recipe.adam_eps)
