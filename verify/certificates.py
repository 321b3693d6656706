"""Margin (Lipschitz) and interval (IBP) certificates, derived by walking the graph's rules.

For a batch of pixel inputs x and radius ε the walk carries, per step and per
coordinate, all in float64:

- v: the value at x, and err64, a bound on |v − exact value at x|;
- L: the ℓ∞ Lipschitz bound w.r.t. the pixels (sample-independent);
- [lo, hi]: an enclosure of the exact values over the box B = [x − ε, x + ε] ∩ domain,
  intersected at every step with v ± (err64 + L·ε) (also an enclosure) and widened by the
  float64 rounding of computing it;
- E: a bound on how far a float32 runtime's value can be from the exact value anywhere
  in B (magnitudes from the enclosure, ``rules.F32`` rounding model).

A sample is certified when its reference prediction is correct and either

- margin: v_y − v_j > err64_y + err64_j + (L_y + L_j)·ε + E_y + E_j for every j ≠ y, or
- IBP: lo_y − E_y > hi_j + E_j for every j ≠ y;

each then proves that both exact arithmetic and every float32 runtime that follows the
rounding model predict y everywhere in B. Neither is issued for a sample where some float32
intermediate could reach ``FLOAT32_SAFE`` anywhere in B (``in_range`` False): past it a runtime
may compute ±inf or NaN, which the rounding model does not cover. ONNX Runtime's default graph
optimisations move scalar Mul/Div by a constant across a following MatMul (MatMulScaleFusion:
alpha · (x @ W)), so a matrix product's intermediates are checked at the magnitudes of every
input of such a run of scalings too, and its products' losses to subnormals, which the scale
then magnifies, are added to E.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linfdist.verify import parallel
from linfdist.verify.graph import Graph
from linfdist.verify.rules import F32, F64, FLOAT32_SAFE, Affine, Div, Mul, up

#: Pixel domain inputs are clipped to (the threat model: images in [0, 1]).
DOMAIN = (0.0, 1.0)
#: Fewest samples per block when a batch is split between cores (smaller blocks cost more than they save).
MIN_BLOCK = 32


def _down(x):
    return np.nextafter(x, -np.inf)


def _upward(x):
    return np.nextafter(x, np.inf)


@dataclass
class Certificates:
    """Per-sample results of one batch (float64 logits, bools, bounds)."""

    logits: np.ndarray
    reference_error: np.ndarray
    runtime_error: np.ndarray
    lipschitz: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    labels: np.ndarray
    eps: float | np.ndarray  #: the radius, or one per sample
    margin: np.ndarray
    ibp: np.ndarray
    in_range: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @property
    def certified(self) -> np.ndarray:
        return self.margin | self.ibp

    def runtime_margin(self, logits: np.ndarray) -> np.ndarray:
        """Margin certificates from a float32 runtime's own logits at x: its error there and
        anywhere in B are both at most E, so it needs r_y − r_j > 2(E_y + E_j) + (L_y + L_j)·ε."""
        y = self.labels
        errors = self.runtime_error
        slack = (2 * (errors[np.arange(len(y)), y][:, None] + errors)
                 + (self.lipschitz[y][:, None] + self.lipschitz) * _per_sample(np.asarray(self.eps), errors))
        return _margin_holds(logits.astype(np.float64), y, up(slack, 4)) & self.in_range


def _margin_holds(logits: np.ndarray, labels: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """Correct and logits_y − logits_j > slack_j for every j ≠ y (rounded against us)."""
    rows = np.arange(len(labels))
    with np.errstate(invalid="ignore"):  # inf − inf is NaN, which fails every comparison: not certified
        diff = _down(logits[rows, labels][:, None] - logits)
    ok = diff > slack
    ok[rows, labels] = True
    return ok.all(1) & (logits.argmax(1) == labels)


def lipschitz(graph: Graph) -> list[np.ndarray]:
    """Per step, the ℓ∞ Lipschitz bound of every output coordinate w.r.t. the pixels."""
    bound = np.ones((1, *graph.sample_shape))
    out = []
    for step in graph.steps:
        bound = step.rule.spread(bound)
        out.append(bound)
    return out


def certify(graph: Graph, pixels: np.ndarray, labels: np.ndarray, eps: float,
            lipschitz_bounds: list[np.ndarray] | None = None, interval: bool = True) -> Certificates:
    """Certificates for float32 pixels [n, *sample_shape] in the domain, labels [n], radius ε ≥ 0 (a number,
    or one per sample).

    ``interval=False`` skips the interval bounds: the enclosure of every step is the Lipschitz box
    v ± (err + L·ε) alone (sound, looser), so the margin certificate and E cost one evaluation of the
    graph instead of three; where it certifies, the full walk certifies too (its E is no larger)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.float32 or pixels.shape[1:] != graph.sample_shape:
        raise ValueError(f"pixels must be float32 [n, {', '.join(map(str, graph.sample_shape))}], "
                         f"got {pixels.dtype} {pixels.shape}")
    if not np.isfinite(pixels).all() or pixels.min(initial=0) < DOMAIN[0] or pixels.max(initial=0) > DOMAIN[1]:
        raise ValueError(f"pixels must be finite and within {DOMAIN}")
    radius = np.asarray(eps, dtype=np.float64)
    if radius.ndim > 1 or (radius.ndim == 1 and radius.shape != (len(pixels),)):
        raise ValueError(f"eps must be a number or one value per sample, got shape {radius.shape}")
    if not (np.isfinite(radius).all() and (radius >= 0).all()):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    labels = np.asarray(labels, dtype=np.int64)
    lips = lipschitz_bounds or lipschitz(graph)
    rows = max(MIN_BLOCK, -(-len(pixels) // parallel.cores()))
    blocks = parallel.run_blocks(len(pixels), rows, lambda i, j: _walk(
        graph, pixels[i:j], labels[i:j], radius if radius.ndim == 0 else radius[i:j], lips, interval), pool="samples")
    return blocks[0] if len(blocks) == 1 else _joined(blocks)


def _joined(blocks: list[Certificates]) -> Certificates:
    """One batch's certificates from those of its consecutive blocks of samples."""
    per_sample = {name: np.concatenate([getattr(b, name) for b in blocks])
                  for name in ("logits", "reference_error", "runtime_error", "lower", "upper", "labels", "margin",
                               "ibp", "in_range")}
    eps = blocks[0].eps if np.ndim(blocks[0].eps) == 0 else np.concatenate([b.eps for b in blocks])
    return Certificates(lipschitz=blocks[0].lipschitz, eps=eps, **per_sample)


def _walk(graph: Graph, pixels: np.ndarray, labels: np.ndarray, radius: np.ndarray, lips: list[np.ndarray],
          interval: bool) -> Certificates:
    """certify's walk over one block of checked samples."""
    v = pixels.astype(np.float64)
    err = np.zeros_like(v)
    runtime = np.zeros_like(v)
    lo = np.clip(_down(v - _per_sample(radius, v)), *DOMAIN)
    hi = np.clip(_upward(v + _per_sample(radius, v)), *DOMAIN)
    in_range = np.ones(len(v), dtype=bool)
    scalings = _ScalarScalings()
    for step, lip in zip(graph.steps, lips):
        rule = step.rule
        value = rule.value(v)
        err = up(rule.spread(err) + rule.rounding(np.abs(v), np.abs(value), F64), 2)
        mag_in = np.maximum(np.abs(lo), np.abs(hi))
        reach = up(err + lip * _per_sample(radius, value), 2)
        if interval:
            blo, bhi = rule.bounds(lo, hi)
            widen = rule.rounding(mag_in, np.maximum(np.abs(blo), np.abs(bhi)), F64)
            blo = _down(np.maximum(blo - widen, value - reach))  # nextafter is monotone: one call covers both
            bhi = _upward(np.minimum(bhi + widen, value + reach))
        else:
            blo, bhi = _down(value - reach), _upward(value + reach)
        moved = rule.spread(runtime)
        reach_in = up(mag_in + runtime)
        in_range &= _below_safe(rule.peak(scalings.widest_input(rule, reach_in)))
        fused = scalings.fused_error(rule)
        scalings.advance(rule, reach_in)
        runtime = up(moved + rule.rounding(mag_in + runtime, np.maximum(np.abs(blo), np.abs(bhi)) + moved, F32)
                     + fused, 3)
        in_range &= _below_safe(up(np.maximum(np.abs(blo), np.abs(bhi)) + runtime))
        v, lo, hi = value, blo, bhi
    lip = lips[-1][0]
    rows = np.arange(len(labels))
    slack = (err[rows, labels][:, None] + err + (lip[labels][:, None] + lip) * _per_sample(radius, v)
             + runtime[rows, labels][:, None] + runtime)
    margin = _margin_holds(v, labels, up(slack, 6)) & in_range
    true_low = _down(lo[rows, labels] - runtime[rows, labels])
    others = _upward(hi + runtime)
    others[rows, labels] = -np.inf
    ibp = (true_low > others.max(1)) & (v.argmax(1) == labels) & in_range
    return Certificates(v, err, runtime, lip, lo, hi, labels, float(radius) if radius.ndim == 0 else radius,
                        margin, ibp, in_range)


def _per_sample(radius: np.ndarray, like: np.ndarray) -> np.ndarray:
    """ε shaped to broadcast against a batch ``like`` [n, ...]: the number itself, or one value per row."""
    return radius if radius.ndim == 0 else radius.reshape(-1, *([1] * (like.ndim - 1)))


def decide(graph: Graph, pixels: np.ndarray, labels: np.ndarray, eps: float,
           lipschitz_bounds: list[np.ndarray] | None = None) -> Certificates:
    """The same decisions as ``certify`` at less cost: the margin certificate over Lipschitz boxes first
    (``interval=False``), the full walk only for the correct samples it leaves open. Each row's fields come
    from one of the two walks (both sound); ``certified`` equals ``certify``'s, ``margin`` and ``ibp`` are
    not its breakdown."""
    quick = certify(graph, pixels, labels, eps, lipschitz_bounds, interval=False)
    rows = np.flatnonzero(quick.correct & ~quick.certified)
    if len(rows) == 0:
        return quick
    eps_rows = eps if np.ndim(eps) == 0 else np.asarray(eps)[rows]
    full = certify(graph, pixels[rows], quick.labels[rows], eps_rows, lipschitz_bounds)
    for name in ("logits", "reference_error", "runtime_error", "lower", "upper", "margin", "ibp", "in_range"):
        getattr(quick, name)[rows] = getattr(full, name)
    return quick


class _ScalarScalings:
    """The run of Mul/Div-by-a-scalar steps just before the current one, which ONNX Runtime may fold into a
    following MatMul or Gemm (MatMulScaleFusion): that product then runs on the run's first input."""

    def __init__(self):
        self.magnitudes, self.factor = None, 1.0  # the run's largest input magnitudes, its product of |factors|

    def widest_input(self, rule, reach_in: np.ndarray) -> np.ndarray:
        """The input magnitudes the step may see: with a fold, those of every input of the run too."""
        if isinstance(rule, Affine) and self.magnitudes is not None:
            return np.maximum(reach_in, self.magnitudes)
        return reach_in

    def fused_error(self, rule) -> float:
        """A folded product's losses to subnormals (each product's), magnified by the scale applied after."""
        if isinstance(rule, Affine) and self.magnitudes is not None:
            return (rule.weight.shape[0] + 3) * F32.underflow * self.factor
        return 0.0

    def advance(self, rule, reach_in: np.ndarray) -> None:
        if not (isinstance(rule, (Mul, Div)) and rule.constant.size == 1):
            self.magnitudes, self.factor = None, 1.0
            return
        factor = abs(float(rule.constant.ravel()[0]))
        self.factor *= factor if isinstance(rule, Mul) else 1 / factor
        self.magnitudes = reach_in if self.magnitudes is None else np.maximum(self.magnitudes, reach_in)


def _below_safe(magnitudes: np.ndarray) -> np.ndarray:
    """Per sample: every magnitude below FLOAT32_SAFE (NaN counts as not)."""
    flat = magnitudes.reshape(len(magnitudes), -1)
    return (flat < FLOAT32_SAFE).all(axis=1)
