"""Layers of ℓp-dist nets: input normalisation, the distance layer and mean-shift normalisation.

Each layer knows its interval rule (``interval``), how many float roundings produce its output
(``roundings``, for the rounding allowances of ``linfdist.rounding``) and its ONNX form
(``export_onnx(g, h, index)``, written against the builder ``linfdist.export`` passes in).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from linfdist.distributed import global_batch_mean
from linfdist.functional import interval_lp_dist, lp_dist
from linfdist.rounding import unit_roundoff


class Normalize(nn.Module):
    """Pixels in [0, 1] (any [N, ...] shape) → flattened (x − mean) / std [N, K], per channel.

    The statistics are non-persistent buffers: they come from the config, not the weights file.
    """

    def __init__(self, input_shape, mean, std):
        super().__init__()
        c, pixels = input_shape[0], math.prod(input_shape[1:])
        for name, values in (("pixel_mean", mean), ("pixel_std", std)):
            per_pixel = torch.tensor(values).expand(c).repeat_interleave(pixels)
            self.register_buffer(name, per_pixel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) - self.pixel_mean) / self.pixel_std

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Monotone increasing (std > 0): the box's corners map to the bounds."""
        return self(lower), self(upper)

    def lipschitz(self) -> float:
        """ℓ∞ Lipschitz constant (1 / min std)."""
        return 1.0 / float(self.pixel_std.min())

    def roundings(self) -> int:
        return 2  # the subtraction and the division

    def absolute_error(self, dtype: torch.dtype) -> float:
        return 0.0

    def export_onnx(self, g, h: str, index: int) -> str:
        h = g.node("Flatten", [h], "flat", axis=1)
        h = g.node("Sub", [h, g.weight("pixel_mean", self.pixel_mean)], "centered")
        return g.node("Div", [h, g.weight("pixel_std", self.pixel_std)], "normalized")


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

    def roundings(self) -> int:
        """Roundings producing a p = ∞ output: the subtraction, and the bias add if any."""
        return 1 if self.bias is None else 2

    def absolute_error(self, dtype: torch.dtype) -> float:
        """The part of the bias add's rounding that comes from |b| (the distance is ≤ |y| + |b|)."""
        return 0.0 if self.bias is None else unit_roundoff(dtype) * float(self.bias.detach().abs().max())

    def export_onnx(self, g, h: str, index: int) -> str:
        """One ``ai.linfdist::LpDist`` node (and the bias add)."""
        h = g.lp_dist(h, g.weight(f"trunk.layers.{index}.weight", self.weight), self.p, f"dist{index}")
        if self.bias is not None:
            h = g.node("Add", [h, g.weight(f"trunk.layers.{index}.bias", self.bias)], f"biased{index}")
        return h

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, p={self.p}, bias={self.bias is not None}"


class MeanShift(nn.Module):
    """y = x − μ: the batch mean while training, a running mean at inference.

    Subtracting a constant keeps every Lipschitz constant unchanged.
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.global_stats = False  # set by distributed training: the batch mean over every rank's shard
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = global_batch_mean(x) if self.global_stats else x.mean(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
            return x - mean
        return x - self.running_mean

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds after the inference-time shift (the running mean)."""
        return lower - self.running_mean, upper - self.running_mean

    def roundings(self) -> int:
        return 1

    def absolute_error(self, dtype: torch.dtype) -> float:
        return 0.0

    def export_onnx(self, g, h: str, index: int, name: str | None = None) -> str:
        """The running mean subtracted (``name``: the state-dict prefix; a trunk's shifts by default)."""
        prefix = name or f"trunk.shifts.{index}"
        out = "features" if name else f"shifted{index}"
        return g.node("Sub", [h, g.weight(f"{prefix}.running_mean", self.running_mean)], out)
