"""Layers of ℓp-dist nets: the distance layer and mean-shift normalisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from linfdist.functional import interval_lp_dist, lp_dist


class LpDistLinear(nn.Module):
    """u_m(x) = ‖x − w_m‖_p (+ b_m): a layer of ℓp-dist neurons, 1-Lipschitz in ℓ∞ for p = ∞.

    ``p`` is a plain attribute so training can anneal it. Layers with in ≤ out start as the
    identity (up to a constant shift) when ``identity_value`` is set, as the authors' NormDist
    does: w[i, i mod in] = −c, so ‖x − w_i‖∞ = x_(i mod in) + c for inputs bounded by c.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float = math.inf,
        bias: bool = False,
        identity_value: float | None = 10.0,
        backend: str = "auto",
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.p = p
        self.backend = backend
        self.identity_value = identity_value
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.identity_value is not None and self.in_features <= self.out_features:
            rows = torch.arange(self.out_features)
            with torch.no_grad():
                self.weight[rows, rows % self.in_features] = -self.identity_value
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def lipschitz(self) -> float:
        """ℓ∞ → ℓ∞ Lipschitz constant of each output: K^(1/p) (1 for p = ∞)."""
        return 1.0 if math.isinf(self.p) else float(self.in_features) ** (1.0 / self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = lp_dist(x, self.weight, self.p, backend=self.backend)
        return y if self.bias is None else y + self.bias

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output bounds over the input box [lower, upper]."""
        lo, hi = interval_lp_dist(lower, upper, self.weight, self.p, backend=self.backend)
        if self.bias is not None:
            lo, hi = lo + self.bias, hi + self.bias
        return lo, hi

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, p={self.p}, bias={self.bias is not None}"


class MeanShift(nn.Module):
    """y = x − μ: the batch mean while training, a running mean at inference.

    Subtracting a constant keeps every Lipschitz constant unchanged.
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
            return x - mean
        return x - self.running_mean

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds after the inference-time shift (the running mean)."""
        return lower - self.running_mean, upper - self.running_mean
