"""One small rule per ONNX op (auto_LiRPA style), each for a node with one computed input.

A rule knows four things about its op f, all in float64 numpy:

- ``value(x)``: f(x) evaluated in float64 from the float32 constants;
- ``bounds(lo, hi)``: an enclosure of f over the box [lo, hi], before rounding (the
  caller widens it by ``rounding(…, F64)``, the error of computing it in float64);
- ``spread(d)``: per output coordinate, how far f can move when each input coordinate
  moves by at most d (d ≥ 0): the per-coordinate ℓ∞ Lipschitz bound, used both for the
  network's Lipschitz constant and to carry rounding errors forward;
- ``rounding(mag_in, mag_out, precision)``: a bound on the new rounding error of one
  evaluation of f in that precision, given bounds on |computed input| and on
  |f(computed input)|;
- ``peak(mag_in)``: a bound on the magnitude of every intermediate value an evaluation of f
  computes (products, partial sums, differences) given a bound on |computed input|, so
  that the caller can tell when a float32 runtime may overflow.

Rounding model (documented in docs/verifier.md): every float op is IEEE round-to-nearest with
unit roundoff u (2^-24 float32, 2^-53 float64); Sub, Add, Mul, Div by a constant are
exactly rounded; Abs, Neg, Max, Relu, reshapes are exact; a sum of n terms in any order
errs by at most γ_n·Σ|terms| (γ_n = n·u / (1 − n·u)); Pow and Tanh are accurate to
``ELEMENTARY_ULPS`` ulps plus the smallest normal number absolutely (ONNX Runtime's Tanh errs by
~160 subnormal units at arguments near 2^-126; tests/test_verify_soundness.py sweeps ONNX Runtime
over the ranges the rules accept); every other op may also lose ``underflow`` absolutely to subnormals.
None of this holds past the largest finite float: ``FLOAT32_SAFE`` is the magnitude no
float32 intermediate may reach for a certificate to stand (certificates.py checks it).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from onnx import AttributeProto, helper

from linfdist.verify import maxplus, parallel
from linfdist.verify.errors import Refused

#: Assumed accuracy of Pow and Tanh in every runtime (ulps of the result); generous on purpose.
ELEMENTARY_ULPS = 16
#: Elements of one float64 scratch block (2 MiB: stays in cache).
BLOCK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class Precision:
    """Unit roundoff (as u/(1 − u), rounded up) and the absolute error subnormals allow."""

    name: str
    u: float
    underflow: float
    tiny: float  # smallest normal number

    def gamma(self, n: int) -> float:
        """γ_n: relative error bound of an n-term sum or dot product."""
        return n * self.u / (1 - n * self.u)


F32 = Precision("float32", 2.0**-24 * (1 + 2.0**-20), 2.0**-149, 2.0**-126)
#: Below FLT_MAX by a margin that covers the relative rounding of any accepted op's intermediates
#: (γ_k for sums of k ≤ 2^13 terms is under 2^-10): magnitudes below it stay finite in float32.
FLOAT32_SAFE = float(np.finfo(np.float32).max) * (1 - 2.0**-8)
F64 = Precision("float64", 2.0**-53 * (1 + 2.0**-20), 2.0**-1074, 2.0**-1022)


def up(x, roundings: int = 1):
    """A non-negative float64 quantity computed with ≤ ``roundings`` roundings, moved up to exceed
    its exact value: × (1 + (n + 2)·2^-52) outgrows (1 + u)^(n+1) even after rounding, and
    (n + 2) subnormal units cover underflow."""
    return np.asarray(x, dtype=np.float64) * (1 + (roundings + 2) * 2.0**-52) + (roundings + 2) * 2.0**-1074


_SCRATCH = threading.local()


def _scratch(shape: tuple) -> np.ndarray:
    """A reusable per-thread float64 buffer (fresh large arrays cost a page fault per 4 KiB)."""
    size = math.prod(shape)
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _SCRATCH.buffer = np.empty(max(size, BLOCK_ELEMENTS))
    return buffer[:size].reshape(shape)


def _attributes(node, allowed: dict) -> dict:
    """The node's attributes, defaults filled in; unknown attributes, and attributes of another ONNX type
    than the default's (FLOAT for a float, INT for an int), are refused."""
    values = dict(allowed)
    for attr in node.attribute:
        if attr.name not in allowed:
            raise Refused(f"attribute {attr.name!r} is not supported")
        expected = AttributeProto.FLOAT if isinstance(allowed[attr.name], float) else AttributeProto.INT
        if attr.type != expected:
            names = AttributeProto.AttributeType.Name
            raise Refused(f"attribute {attr.name!r} must be of type {names(expected)}, got {names(attr.type)}")
        values[attr.name] = helper.get_attribute_value(attr)
    return values


def _float_constant(value: np.ndarray, what: str) -> np.ndarray:
    if value.dtype != np.float32:
        raise Refused(f"{what} must be float32, got {value.dtype}")
    if not np.isfinite(value).all():
        raise Refused(f"{what} holds NaN or infinite values")
    return value.astype(np.float64)


class Rule:
    """Identity semantics; subclasses override what their op changes."""

    attributes: dict = {}
    positions = (0,)

    def __init__(self, node, position: int, operands: list, in_shape: tuple):
        if position not in self.positions:
            raise Refused(f"the computed tensor must be input {self.positions[0]}, it is input {position}")
        self.attrs = _attributes(node, self.attributes)
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape
        self.setup(operands, position)

    def setup(self, operands: list, position: int) -> None:
        if len(operands) != 1:
            raise Refused(f"expected 1 input, got {len(operands)}")

    def value(self, x):
        return x

    def bounds(self, lo, hi):
        return lo, hi

    def spread(self, d):
        return d

    def rounding(self, mag_in, mag_out, precision: Precision):
        return 0.0

    def peak(self, mag_in):
        return mag_in


class Identity(Rule):
    pass


class Neg(Rule):
    def value(self, x):
        return -x

    def bounds(self, lo, hi):
        return -hi, -lo


class Relu(Rule):
    def value(self, x):
        return np.maximum(x, 0.0)

    def bounds(self, lo, hi):
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)


class Tanh(Rule):
    def value(self, x):
        return np.tanh(x)

    def bounds(self, lo, hi):
        return np.tanh(lo), np.tanh(hi)

    def rounding(self, mag_in, mag_out, precision):
        return up(ELEMENTARY_ULPS * 2 * precision.u * mag_out + precision.tiny, 2)


class _WithConstant(Rule):
    """Elementwise op between the computed tensor and a constant broadcast against it."""

    positions = (0, 1)

    def setup(self, operands, position):
        if len(operands) != 2:
            raise Refused(f"expected 2 inputs, got {len(operands)}")
        self.position = position
        self.constant = _float_constant(operands[1 - position], "the constant operand")
        full = (1, *self.in_shape)
        try:
            fits = np.broadcast_shapes(full, self.constant.shape) == full
        except ValueError:
            fits = False
        if not fits:
            raise Refused(f"constant of shape {self.constant.shape} does not broadcast onto [batch, {self.in_shape}]")

    def rounding(self, mag_in, mag_out, precision):
        return up(precision.u * mag_out + precision.underflow, 2)


class Add(_WithConstant):
    def value(self, x):
        return x + self.constant

    def peak(self, mag_in):
        return mag_in + np.abs(self.constant)

    def bounds(self, lo, hi):
        return lo + self.constant, hi + self.constant


class Sub(_WithConstant):
    def value(self, x):
        return x - self.constant if self.position == 0 else self.constant - x

    def bounds(self, lo, hi):
        if self.position == 0:
            return lo - self.constant, hi - self.constant
        return self.constant - hi, self.constant - lo

    def peak(self, mag_in):
        return mag_in + np.abs(self.constant)


class Mul(_WithConstant):
    def value(self, x):
        return x * self.constant

    def bounds(self, lo, hi):
        a, b = lo * self.constant, hi * self.constant
        return np.minimum(a, b), np.maximum(a, b)

    def spread(self, d):
        return up(d * np.abs(self.constant))

    def peak(self, mag_in):
        return np.maximum(mag_in, mag_in * np.abs(self.constant))


class Div(_WithConstant):
    positions = (0,)

    def setup(self, operands, position):
        super().setup(operands, position)
        if (self.constant == 0).any():
            raise Refused("division by a constant that holds zeros")

    def value(self, x):
        return x / self.constant

    def bounds(self, lo, hi):
        a, b = lo / self.constant, hi / self.constant
        return np.minimum(a, b), np.maximum(a, b)

    def spread(self, d):
        return up(d / np.abs(self.constant))

    def peak(self, mag_in):
        return np.maximum(mag_in, mag_in / np.abs(self.constant))


class Flatten(Rule):
    attributes = {"axis": 1}

    def setup(self, operands, position):
        super().setup(operands, position)
        if self.attrs["axis"] % (1 + len(self.in_shape)) != 1:
            raise Refused(f"only Flatten(axis=1) keeps the batch axis, got axis={self.attrs['axis']}")
        self.out_shape = (math.prod(self.in_shape),)

    def _reshape(self, x):
        return x.reshape(len(x), *self.out_shape)

    value = spread = _reshape

    def bounds(self, lo, hi):
        return self._reshape(lo), self._reshape(hi)


class Reshape(Flatten):
    attributes = {"allowzero": 0}

    def setup(self, operands, position):
        if len(operands) != 2 or operands[1] is None:
            raise Refused("Reshape needs a constant shape")
        target = [int(v) for v in operands[1].ravel()]
        if self.attrs["allowzero"] and 0 in target:
            raise Refused("Reshape with allowzero=1 and a zero in the shape is not supported")
        if not target or target[0] not in (0, -1):
            raise Refused(f"Reshape to {target} does not keep the batch axis")
        # a 0 copies the input's size on that axis; one -1 takes what is left
        rest = [self.in_shape[i] if v == 0 and i < len(self.in_shape) else v for i, v in enumerate(target[1:])]
        size = math.prod(self.in_shape)
        if rest.count(-1) > (target[0] != -1):
            raise Refused(f"Reshape to {target} does not keep the batch axis")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            rest[rest.index(-1)] = size // known if known > 0 and size % known == 0 else 0
        if any(v < 1 for v in rest) or math.prod(rest) != size:
            raise Refused(f"Reshape to {target} does not fit a sample of shape {self.in_shape}")
        self.out_shape = tuple(rest)


class Affine(Rule):
    """Gemm (alpha = beta = 1, no transA) or MatMul by a constant matrix: y = x W + c."""

    attributes = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}

    def setup(self, operands, position):
        if len(self.in_shape) != 1:
            raise Refused(f"needs a [batch, features] input, got [batch, {self.in_shape}]")
        if self.attrs["alpha"] != 1.0 or self.attrs["beta"] != 1.0 or self.attrs["transA"]:
            raise Refused("only alpha = beta = 1 and transA = 0 are supported")
        if len(operands) not in (2, 3) or operands[1] is None:
            raise Refused("needs a constant weight matrix")
        weight = _float_constant(operands[1], "the weight")
        if weight.ndim != 2:
            raise Refused(f"the weight must be a matrix, got shape {weight.shape}")
        self.weight = weight.T if self.attrs["transB"] else weight
        k, m = self.weight.shape
        if k != self.in_shape[0]:
            raise Refused(f"the weight is {k} x {m} but the input has {self.in_shape[0]} features")
        self.abs_weight = np.abs(self.weight)
        self.bias = np.zeros(m)
        if len(operands) == 3 and operands[2] is not None:
            bias = _float_constant(operands[2], "the bias")
            if bias.shape not in ((), (1,), (m,), (1, 1), (1, m)):
                # ONNX broadcasts C against [batch, m]: a first axis other than 1 ([m, 1], [batch, m]) is
                # one value per sample row, a meaning that depends on the batch
                raise Refused(f"the bias C of shape {list(bias.shape)} is not one value or one per output "
                              f"([{m}] or [1, {m}]): ONNX would apply it per sample row")
            self.bias = np.broadcast_to(bias.reshape(-1), (m,)).astype(np.float64)
        self.out_shape = (m,)

    def value(self, x):
        return x @ self.weight + self.bias

    def bounds(self, lo, hi):
        center = (hi + lo) / 2 @ self.weight + self.bias
        radius = (hi - lo) / 2 @ self.abs_weight
        return center - radius, center + radius

    def spread(self, d):
        return up(d @ self.abs_weight, self.weight.shape[0])

    def rounding(self, mag_in, mag_out, precision):
        k = self.weight.shape[0] + 3
        total = mag_in @ self.abs_weight + np.abs(self.bias)
        return up(precision.gamma(k) * total + k * precision.underflow, k + 2)  # each product may underflow

    def peak(self, mag_in):
        """Every product and partial sum is at most Σ|x||W| + |c|; the largest single product at most that too."""
        return np.maximum(mag_in.max(axis=1, keepdims=True), mag_in @ self.abs_weight + np.abs(self.bias))


class MatMul(Affine):
    attributes = {}

    def setup(self, operands, position):
        if len(operands) != 2:
            raise Refused(f"expected 2 inputs, got {len(operands)}")
        self.attrs = dict(Affine.attributes)
        super().setup(operands, position)


class LpDist(Rule):
    """ai.linfdist::LpDist: y[m] = ‖x − W[m]‖_p (1-Lipschitz in ℓ∞ for p = ∞, K^(1/p) otherwise)."""

    attributes = {"p": math.inf}

    def setup(self, operands, position):
        if len(operands) != 2 or operands[1] is None:
            raise Refused("needs a constant weight matrix")
        self.p = float(self.attrs["p"])
        if not self.p >= 1:
            raise Refused(f"p must be >= 1, got {self.p}")
        self.weight = _float_constant(operands[1], "the weight")
        if self.weight.ndim != 2 or len(self.in_shape) != 1 or self.weight.shape[1] != self.in_shape[0]:
            raise Refused(f"weight {self.weight.shape} does not fit an input of [batch, {self.in_shape}]")
        self.weight_t = np.ascontiguousarray(self.weight.T)
        self.out_shape = (self.weight.shape[0],)

    def _extremes(self, a):
        """(max_k (a[n,k] − W[m,k]), max_k (W[m,k] − a[n,k])), each [N, M]: the compiled helper, else numpy."""
        compiled = maxplus.extremes(a, self.weight_t)
        if compiled is not None:
            return compiled
        n, m = len(a), len(self.weight)
        above, below = np.empty((n, m)), np.empty((n, m))

        def work(i, j):
            diff = np.subtract(a[i:j, None, :], self.weight[None], out=_scratch((j - i, *self.weight.shape)))
            diff.max(axis=2, out=above[i:j])
            np.negative(diff.min(axis=2), out=below[i:j])

        parallel.run_blocks(n, max(1, BLOCK_ELEMENTS // self.weight.size), work)
        return above, below

    def _norms(self, a, b, combine):
        """‖combine(a[n] − W[m], W[m] − b[n])‖_p over k for finite p, as [N, M]."""
        n, m = len(a), len(self.weight)
        out = np.empty((n, m))

        def work(i, j):
            d = combine(a[i:j, None, :] - self.weight[None], self.weight[None] - b[i:j, None, :])
            peak = d.max(axis=2, keepdims=True)
            scale = np.where(peak > 0, peak, 1.0)
            out[i:j] = (((d / scale) ** self.p).sum(axis=2, keepdims=True) ** (1 / self.p) * peak)[..., 0]

        parallel.run_blocks(n, max(1, BLOCK_ELEMENTS // self.weight.size), work)
        return out

    def value(self, x):
        if math.isinf(self.p):
            return np.maximum(*self._extremes(x))
        return self._norms(x, x, np.maximum)

    def bounds(self, lo, hi):
        if not math.isinf(self.p):
            return self._norms(lo, hi, lambda a, b: np.maximum(np.maximum(a, b), 0.0)), \
                self._norms(hi, lo, np.maximum)
        lo_above, lo_below = self._extremes(lo)
        hi_above, hi_below = self._extremes(hi)
        return np.maximum(np.maximum(lo_above, hi_below), 0.0), np.maximum(hi_above, lo_below)

    def spread(self, d):
        k = d.shape[1]
        if math.isinf(self.p):
            per_sample = d.max(axis=1, keepdims=True)
        else:
            peak = d.max(axis=1, keepdims=True)
            scale = np.where(peak > 0, peak, 1.0)
            per_sample = up(((d / scale) ** self.p).sum(axis=1, keepdims=True) ** (1 / self.p) * peak
                            * (1 + self._relative_error(F64, k)))
        return np.repeat(per_sample, len(self.weight), axis=1)

    def peak(self, mag_in):
        """The differences |x − W[m]| ≤ max|x| + max|W[m]| (ratios and their powers stay ≤ 1, the sum ≤ K,
        the result ≤ K^(1/p) · peak: the caller checks the output's own magnitude)."""
        return np.maximum(mag_in.max(axis=1, keepdims=True),
                          mag_in.max(axis=1, keepdims=True) + np.abs(self.weight).max(axis=1)[None])

    def _relative_error(self, precision: Precision, k: int) -> float:
        """Relative error of the scaled ℓp body: a subtraction, a division and a product
        (1 + u each), Pow twice (1 + η), a k-term sum of terms ≤ 1 with at least one = 1
        (γ_k, plus k subnormal losses), all under the 1/p root; as rel / (1 − rel)."""
        eta = ELEMENTARY_ULPS * 2 * precision.u
        rel = ((1 + precision.u) ** 3 * (1 + eta) ** (1 + 1 / self.p)
               * (1 + precision.gamma(k) + k * precision.tiny) ** (1 / self.p)) - 1
        return rel / (1 - rel)

    def rounding(self, mag_in, mag_out, precision):
        if math.isinf(self.p):
            return up(precision.u * mag_out + precision.underflow, 2)
        return up(self._relative_error(precision, self.weight.shape[1]) * mag_out + precision.underflow, 4)


RULES = {
    ("", "Identity"): Identity, ("", "Neg"): Neg, ("", "Relu"): Relu, ("", "Tanh"): Tanh,
    ("", "Add"): Add, ("", "Sub"): Sub, ("", "Mul"): Mul, ("", "Div"): Div,
    ("", "Flatten"): Flatten, ("", "Reshape"): Reshape, ("", "Gemm"): Affine, ("", "MatMul"): MatMul,
    ("ai.linfdist", "LpDist"): LpDist,
}
