"""Check that an ``ai.linfdist::LpDist`` FunctionProto computes ‖X[n] − W[m]‖_p.

Runtimes such as ONNX Runtime execute the body a file carries, while the verifier
certifies the distance the op's name and ``p`` claim; the two must agree. The body is
evaluated symbolically (each output becomes an expression tree over X, W and
constants) and the tree of Y must be one of the two accepted forms:

- p = ∞: ReduceMax_k |Unsqueeze(X, 1) − Unsqueeze(W, 0)|           (keepdims 0)
- finite p: peak · (ReduceSum_k (|D| / Where(peak > 0, peak, 1))^p)^(1/p), squeezed,
  with peak = ReduceMax_k |D| (keepdims 1) and the constants p, 1/p in float32.

Anything else — another reduction, an extra operation, an attribute reference,
different constants — is refused.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import AttributeProto, FunctionProto, numpy_helper

from linfdist.verify.errors import Refused

DOMAIN, OP = "ai.linfdist", "LpDist"
_UNARY = {"Abs", "Neg"}
_BINARY = {"Sub", "Div", "Mul", "Pow", "Greater"}


def _const(value: np.ndarray) -> tuple:
    return ("const", value.dtype.str, value.shape, tuple(value.ravel().tolist()))


def _axes(values, rank: int = 3) -> tuple:
    return tuple(sorted(int(a) % rank for a in values))


def _attributes(node) -> dict:
    out = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise Refused(f"LpDist body node {node.op_type} refers to a function attribute ({a.ref_attr_name})")
        if a.type == AttributeProto.INT:
            out[a.name] = a.i
        elif a.type == AttributeProto.INTS:
            out[a.name] = tuple(a.ints)
        elif a.type == AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        else:
            raise Refused(f"LpDist body node {node.op_type} has an attribute {a.name} of a kind the verifier reads not")
    return out


#: The opset from which each op takes its axes as an input; before it, as an attribute (ONNX's operator
#: changelog). A body giving them the other way is not what its opset defines: runtimes may read it differently.
AXES_INPUT_SINCE = {"Unsqueeze": 13, "Squeeze": 13, "ReduceSum": 13, "ReduceMax": 18}


def _axes_of(node, attrs: dict, args: list, opset: int) -> tuple:
    """Reduction / (un)squeeze axes, from the attribute or a constant input, as the body's opset defines them."""
    as_input = opset >= AXES_INPUT_SINCE[node.op_type]
    if as_input and "axes" in attrs or not as_input and len(args) > 1:
        form = "an input" if as_input else "an attribute"
        raise Refused(f"LpDist body: {node.op_type} takes its axes as {form} at opset {opset}; this body gives "
                      "them the other way")
    if len(args) > 1:
        axes = args[1]
        if axes[0] != "const":
            raise Refused(f"LpDist body: {node.op_type} axes are not a constant")
        return _axes(axes[3])
    if "axes" not in attrs:
        raise Refused(f"LpDist body: {node.op_type} without axes (all axes) is not a distance")
    return _axes(attrs["axes"])


def _default_opset(function: FunctionProto) -> int:
    versions = [o.version for o in function.opset_import if o.domain in ("", "ai.onnx")]
    if len(versions) != 1:
        raise Refused(f"LpDist body imports the default ONNX domain {len(versions)} times; needs exactly once")
    return versions[0]


def symbolic_output(function: FunctionProto) -> tuple:
    """The expression tree of the body's output Y."""
    if list(function.input) != ["X", "W"] or list(function.output) != ["Y"]:
        raise Refused(f"LpDist body must map (X, W) to Y, got {list(function.input)} -> {list(function.output)}")
    env = {"X": ("X",), "W": ("W",)}
    opset = _default_opset(function)
    for node in function.node:
        if node.domain not in ("", "ai.onnx"):
            raise Refused(f"LpDist body uses op {node.domain}::{node.op_type}")
        attrs = _attributes(node)
        try:
            args = [env[name] for name in node.input]
        except KeyError as err:
            raise Refused(f"LpDist body: {node.op_type} reads undefined value {err}") from None
        op = node.op_type
        if op == "Constant":
            if set(attrs) != {"value"}:
                raise Refused(f"LpDist body: Constant with attributes {sorted(attrs)}")
            expr = _const(attrs["value"])
        elif op in ("Unsqueeze", "Squeeze"):
            _only(node, attrs, {"axes"})
            expr = (op, _axes_of(node, attrs, args, opset), args[0])
        elif op in ("ReduceMax", "ReduceSum"):
            _only(node, attrs, {"axes", "keepdims"})
            expr = (op, _axes_of(node, attrs, args, opset), attrs.get("keepdims", 1), args[0])
        elif op in _UNARY and len(args) == 1:
            _only(node, attrs, set())
            expr = (op, args[0])
        elif op in _BINARY and len(args) == 2:
            _only(node, attrs, set())
            expr = (op, args[0], args[1])
        elif op == "Where" and len(args) == 3:
            _only(node, attrs, set())
            expr = (op, *args)
        else:
            raise Refused(f"LpDist body uses {op}, which no accepted form of the distance contains")
        if len(node.output) != 1:
            raise Refused(f"LpDist body: {op} with {len(node.output)} outputs")
        env[node.output[0]] = expr
    if "Y" not in env:
        raise Refused("LpDist body never computes Y")
    return env["Y"]


def _only(node, attrs: dict, allowed: set) -> None:
    extra = set(attrs) - allowed
    if extra:
        raise Refused(f"LpDist body: {node.op_type} has unexpected attribute(s) {sorted(extra)}")


def _is_abs_diff(expr) -> bool:
    """|Unsqueeze(X, 1) − Unsqueeze(W, 0)| in either order (|a − b| = |b − a| exactly)."""
    x3, w3 = ("Unsqueeze", (1,), ("X",)), ("Unsqueeze", (0,), ("W",))
    return expr in (("Abs", ("Sub", x3, w3)), ("Abs", ("Sub", w3, x3)))


def _is_scalar(expr, value: float) -> bool:
    return expr[0] == "const" and expr[1] == "<f4" and len(expr[3]) == 1 and expr[3][0] == float(np.float32(value))


def _commuted(expr, op: str):
    """The two operands of a commutative op in both orders."""
    if expr[0] != op:
        return []
    return [(expr[1], expr[2]), (expr[2], expr[1])]


def check_body(function: FunctionProto) -> float:
    """The p the body computes (∞ or finite ≥ 1); Refused if it is not an ℓp distance."""
    y = symbolic_output(function)
    if y[:3] == ("ReduceMax", (2,), 0) and _is_abs_diff(y[3]):
        return math.inf
    if y[:2] != ("Squeeze", (2,)):
        raise Refused("LpDist body computes neither max_k |X − W| nor the scaled ℓp norm")
    for peak, root in _commuted(y[2], "Mul"):
        if not (peak[:3] == ("ReduceMax", (2,), 1) and _is_abs_diff(peak[3])) or root[0] != "Pow":
            continue
        total, inverse = root[1], root[2]
        if total[:3] != ("ReduceSum", (2,), 1) or total[3][0] != "Pow":
            continue
        ratio, exponent = total[3][1], total[3][2]
        if ratio[0] != "Div" or ratio[1] != peak[3] or exponent[0] != "const":
            continue
        where = ratio[2]  # the scale: Where(peak > 0, peak, 1)
        if where[0] != "Where" or where[1][:2] != ("Greater", peak) or not _is_scalar(where[1][2], 0.0) \
                or where[2] != peak or not _is_scalar(where[3], 1.0):
            continue
        p = exponent[3][0] if len(exponent[3]) == 1 else float("nan")
        if not (p >= 1 and math.isfinite(p)) or not _is_scalar(exponent, p) or not _is_scalar(inverse, 1.0 / p):
            raise Refused(f"LpDist body: exponent {exponent[3]} / root {inverse[3]} are not p and 1/p for a p >= 1")
        return p
    raise Refused("LpDist body computes neither max_k |X − W| nor the scaled ℓp norm")
