"""PGD on the logit margin inside the ε-box clipped to [0, 1]: the empirical robustness check.

A certificate promises no attack succeeds, so PGD accuracy can never be below certified
accuracy; training logs both and reports any certified sample PGD breaks as a bug.
"""

from __future__ import annotations

import torch

from linfdist.certify import margin


def pgd(model, x: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial inputs: random start, ``steps`` sign-gradient steps of ε/4 minimising the margin."""
    if eps <= 0 or steps <= 0:
        return x
    delta = (torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * eps  # CPU generator, any device
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = margin(model((x + delta).clamp(0, 1)), labels).sum()
            (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() - 0.25 * eps * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()
