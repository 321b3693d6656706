"""Read an ONNX file into a chain of verifier rules, refusing anything not understood.

The accepted graphs are chains: one float32 input [N, ...], one float32 output
[N, classes], and every computing node takes exactly one computed tensor plus
constants (initializers or Constant nodes). LpDist nodes must be ``ai.linfdist::LpDist``
whose model-local FunctionProto really computes the distance (``function_body``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from linfdist.verify.errors import Refused, first_line
from linfdist.verify.function_body import DOMAIN, OP, check_body
from linfdist.verify.rules import RULES, LpDist, Rule

#: Default-domain opsets whose semantics of the supported ops the rules implement.
OPSETS = range(13, 22)


@dataclass
class Step:
    """One node: its rule, the computed tensor it reads and the one it writes."""

    name: str
    rule: Rule
    source: str
    target: str


@dataclass
class Graph:
    """A verified-readable model: input shape per sample, the chain of steps, metadata."""

    path: Path
    input_name: str
    sample_shape: tuple
    output_name: str
    steps: list
    metadata: dict = field(default_factory=dict)
    opset: int = 0

    @property
    def num_classes(self) -> int:
        return self.steps[-1].rule.out_shape[0]

    @property
    def widest_layer(self) -> int:
        """The largest M·K of any LpDist step (runtimes chunk batches by it)."""
        return max([s.rule.weight.size for s in self.steps if isinstance(s.rule, LpDist)], default=1)


def _read(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises several unrelated types on garbage
        raise Refused(f"{path}: not a readable ONNX file ({type(err).__name__}: {err})") from None
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = first_line(err) or type(err).__name__
        raise Refused(f"{path}: the ONNX checker rejects it ({first})") from None
    return model


def _opsets(model: onnx.ModelProto) -> int:
    opsets = {o.domain or "": o.version for o in model.opset_import}
    unknown = sorted(set(opsets) - {"", "ai.onnx", DOMAIN})
    if unknown:
        raise Refused(f"the model imports operator domain(s) {', '.join(unknown)}, which the verifier does not know")
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset not in OPSETS:
        raise Refused(f"default-domain opset {opset} is not supported (supported: {OPSETS.start}..{OPSETS.stop - 1})")
    return opset


def _lp_dist_p(model: onnx.ModelProto) -> float | None:
    """The p that the model's LpDist FunctionProto computes (None if it has none)."""
    found = None
    for function in model.functions:
        if (function.domain, function.name) != (DOMAIN, OP):
            raise Refused(f"the model defines function {function.domain}::{function.name}; only {DOMAIN}::{OP} is known")
        if found is not None:
            raise Refused(f"the model defines {DOMAIN}::{OP} twice")
        body_opsets = {o.domain or "": o.version for o in function.opset_import}
        if set(body_opsets) - {""} or body_opsets.get("", 0) not in OPSETS:
            raise Refused(f"the {OP} body imports opsets {body_opsets}; it needs one default-domain opset in "
                          f"{OPSETS.start}..{OPSETS.stop - 1}")
        found = check_body(function)
    return found


def _input(model: onnx.ModelProto) -> tuple[str, tuple]:
    inputs = list(model.graph.input)
    if len(inputs) != 1:
        raise Refused(f"the graph must take exactly one input, it takes {[v.name for v in inputs]}")
    value = inputs[0]
    tensor = value.type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT:
        raise Refused(f"input {value.name} must be float32")
    dims = list(tensor.shape.dim)
    if len(dims) < 2 or any(not d.HasField("dim_value") or d.dim_value < 1 for d in dims[1:]):
        raise Refused(f"input {value.name} must be [batch, fixed sizes...]; got {onnx.helper.printable_type(value.type)}")
    return value.name, tuple(d.dim_value for d in dims[1:])


def _output(model: onnx.ModelProto) -> str:
    if len(model.graph.output) != 1:
        raise Refused(f"the graph must have exactly one output (the logits), it has {len(model.graph.output)}")
    value = model.graph.output[0]
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise Refused(f"output {value.name} must be float32")
    return value.name


def _array(tensor: onnx.TensorProto, what: str) -> np.ndarray:
    """A stored tensor's values, or Refused when its data does not fit its type and shape."""
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, AssertionError) as err:
        raise Refused(f"{what}: its data does not fit its type and shape ({err})") from None


def _constant(node) -> np.ndarray:
    attrs = {a.name: a for a in node.attribute}
    if set(attrs) != {"value"} or attrs["value"].type != onnx.AttributeProto.TENSOR:
        raise Refused(f"node {node.name!r}: Constant must carry a tensor 'value' (got {sorted(attrs)})")
    return _array(attrs["value"].t, f"node {node.name!r} (Constant)")


def load_graph(path) -> Graph:
    """Parse and check an exported model; Refused (naming the node) for anything not understood."""
    path = Path(path)
    model = _read(path)
    opset = _opsets(model)
    p = _lp_dist_p(model)
    constants = {init.name: _array(init, f"initializer {init.name!r}") for init in model.graph.initializer}
    if model.graph.sparse_initializer:
        raise Refused("sparse initializers are not supported")
    fed = sorted(v.name for v in model.graph.input if v.name in constants)
    if fed:
        raise Refused(f"initializer(s) {', '.join(fed)} are also graph inputs: a caller may feed other values at run "
                      "time (ONNX Runtime lets them), so they are not constants the verifier can rely on")
    input_name, shape = _input(model)
    output_name = _output(model)
    shapes = {input_name: shape}
    steps = []
    for node in model.graph.node:
        label = f"node {node.name or '(unnamed)'!r} ({node.domain + '::' if node.domain else ''}{node.op_type})"
        if len(node.output) != 1:
            raise Refused(f"{label}: nodes must have exactly one output")
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constants[node.output[0]] = _constant(node)
            continue
        key = (node.domain if node.domain != "ai.onnx" else "", node.op_type)
        if key not in RULES:
            known = ", ".join(sorted(f"{d}::{o}" if d else o for d, o in RULES))
            raise Refused(f"{label}: op not supported by the verifier (supported: Constant, {known})")
        computed = [i for i, name in enumerate(node.input) if name in shapes]
        if len(computed) != 1:
            what = "no computed input (fold constant subgraphs)" if not computed else "two computed inputs"
            raise Refused(f"{label}: {what}; the verifier handles chains of ops with constant operands")
        position = computed[0]
        operands = [None if i == position or not name else _operand(label, constants, name)
                    for i, name in enumerate(node.input)]
        try:
            rule = RULES[key](node, position, operands, shapes[node.input[position]])
        except Refused as err:
            raise Refused(f"{label}: {err}") from None
        if isinstance(rule, LpDist) and (p is None or np.float32(rule.p) != np.float32(p)):
            raise Refused(f"{label}: p = {rule.p} but the model's {OP} body computes p = {p}")
        shapes[node.output[0]] = rule.out_shape
        steps.append(Step(node.name or node.output[0], rule, node.input[position], node.output[0]))
    _check_chain(steps, input_name, output_name)
    if len(shapes[output_name]) != 1 or shapes[output_name][0] < 2:
        raise Refused(f"output {output_name} must be [batch, classes >= 2], got [batch, {shapes[output_name]}]")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return Graph(path, input_name, shape, output_name, steps, metadata, opset)


def _operand(label: str, constants: dict, name: str) -> np.ndarray:
    if name not in constants:
        raise Refused(f"{label}: input {name!r} is neither computed from the graph input nor a constant")
    return constants[name]


def _check_chain(steps: list, input_name: str, output_name: str) -> None:
    """Every computing node lies on the one path from the input to the output."""
    current = input_name
    for step in steps:
        if step.source != current:
            raise Refused(f"node {step.name!r} reads {step.source!r}, but the chain is at {current!r}: "
                          "branches and unused computations are not supported")
        current = step.target
    if current != output_name:
        raise Refused(f"the chain of ops ends at {current!r}, not at the graph output {output_name!r}")
