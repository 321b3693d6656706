"""The ``ai.linfdist::LpDist`` op: its FunctionProto, so stock ONNX Runtime runs it.

``LpDist(X[N, K], W[M, K]) → Y[N, M]`` with float attribute ``p``. The body a model
carries is written for the p its layers use:

- p = ∞: Unsqueeze, Sub, Abs, ReduceMax — every step exactly rounded, so any runtime
  matches torch bit for bit;
- finite p: the same max, then ReduceSum((|d| / max)^p)^(1/p) · max (stable at p = 1000).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import FunctionProto, NodeProto, helper, numpy_helper

DOMAIN = "ai.linfdist"
OP = "LpDist"
DOMAIN_VERSION = 1


def _const(name: str, values, dtype=np.int64) -> NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype=dtype), name))


#: The opset from which each reduction takes its axes as an input instead of an attribute.
AXES_INPUT_SINCE = {"ReduceMax": 18, "ReduceSum": 13}


def _reduce(op: str, data: str, out: str, opset: int, keepdims: int) -> list[NodeProto]:
    """A reduction over the last axis (axes an input from AXES_INPUT_SINCE[op], an attribute before)."""
    if opset >= AXES_INPUT_SINCE[op]:
        return [helper.make_node(op, [data, "axis_k"], [out], keepdims=keepdims)]
    return [helper.make_node(op, [data], [out], axes=[2], keepdims=keepdims)]


def lp_dist_function(p: float, opset: int) -> FunctionProto:
    """The FunctionProto defining LpDist for exponent ``p`` at the given ONNX opset."""
    nodes = [
        _const("axis_n", [1]), _const("axis_m", [0]),
        helper.make_node("Unsqueeze", ["X", "axis_n"], ["X3"]),   # [N, 1, K]
        helper.make_node("Unsqueeze", ["W", "axis_m"], ["W3"]),   # [1, M, K]
        helper.make_node("Sub", ["X3", "W3"], ["D"]),
        helper.make_node("Abs", ["D"], ["A"]),
    ]
    if opset >= min(AXES_INPUT_SINCE.values()):
        nodes.append(_const("axis_k", [2]))
    if math.isinf(p):
        nodes += _reduce("ReduceMax", "A", "Y", opset, keepdims=0)
    else:
        nodes += _reduce("ReduceMax", "A", "peak", opset, keepdims=1)
        nodes += [
            _const("zero", 0.0, np.float32), _const("one", 1.0, np.float32),
            _const("exponent", p, np.float32), _const("inverse", 1.0 / p, np.float32),
            helper.make_node("Greater", ["peak", "zero"], ["positive"]),
            helper.make_node("Where", ["positive", "peak", "one"], ["scale"]),
            helper.make_node("Div", ["A", "scale"], ["R"]),
            helper.make_node("Pow", ["R", "exponent"], ["RP"]),
        ]
        nodes += _reduce("ReduceSum", "RP", "S", opset, keepdims=1)
        nodes += [
            helper.make_node("Pow", ["S", "inverse"], ["SP"]),
            helper.make_node("Mul", ["peak", "SP"], ["Y3"]),
            _const("axis_last", [2]),
            helper.make_node("Squeeze", ["Y3", "axis_last"], ["Y"]),
        ]
    return helper.make_function(
        DOMAIN, OP, inputs=["X", "W"], outputs=["Y"], nodes=nodes,
        opset_imports=[helper.make_opsetid("", opset)], attributes=["p"],
        doc_string=f"Y[n, m] = ||X[n] - W[m]||_p; this body is written for p = {p:g}",
    )
