"""Random graphs over the accepted op set: no certificate the verifier issues is ever broken.

Each case is a seeded random chain (Gemm/MatMul, LpDist at p = ∞ or a finite p, Add/Sub/Mul/Div by
constants of random valid broadcast shapes, Neg, Relu, Tanh, Identity, Flatten, Reshape) at a random
opset 13..21, with constants drawn from normal values, zeros, subnormals and magnitudes near
±FLT_MAX. A graph the verifier refuses is fine; for every sample it certifies, ONNX Runtime and
onnx.reference.ReferenceEvaluator (float32) must predict the label at the sample, at random points of
the box and at its corners, and stay within the derived bounds (enclosure ± runtime error).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from linfdist.export.lp_dist_function import DOMAIN, DOMAIN_VERSION, lp_dist_function
from linfdist.verify.certificates import DOMAIN as PIXELS, certify
from linfdist.verify.errors import Refused
from linfdist.verify.graph import load_graph

FLT_MAX = float(np.finfo(np.float32).max)


def _values(rng, shape, allow_zero=True):
    """float32 constants of one random magnitude class."""
    kind = rng.choice(["normal", "normal", "normal", "tiny", "huge", "zero", "mixed"])
    if kind == "zero" and not allow_zero:
        kind = "normal"
    size = int(np.prod(shape)) if shape else 1
    if kind == "normal":
        v = rng.normal(0, rng.choice([0.1, 1.0, 10.0]), size)
    elif kind == "tiny":
        v = rng.choice([-1, 1], size) * np.exp2(rng.uniform(-149, -120, size))
    elif kind == "huge":
        v = rng.choice([-1, 1], size) * FLT_MAX * rng.uniform(0.05, 1.0, size)
    elif kind == "zero":
        v = np.zeros(size)
    else:
        v = rng.normal(0, 1, size) * rng.choice([1e-44, 1e-3, 1.0, 1e3, 1e37], size)
    return v.astype(np.float32).reshape(shape)


class _Builder:
    def __init__(self, rng, opset):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, values):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(values, name))
        return name

    def node(self, op, inputs, domain="", **attrs):
        out = self.name("t")
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out


def random_graph(seed: int) -> onnx.ModelProto:
    """A random chain over the accepted ops (some of them ones the verifier should refuse)."""
    rng = np.random.default_rng(seed)
    opset = int(rng.integers(13, 22))
    b = _Builder(rng, opset)
    width = input_width = int(rng.integers(1, 4))
    p = math.inf if rng.random() < 0.6 else float(rng.choice([1.0, 2.0, 8.0, float(np.float32(rng.uniform(1, 60)))]))
    h, uses_lp = "x", False
    for _ in range(int(rng.integers(1, 5))):
        op = rng.choice(["gemm", "matmul", "lpdist", "lpdist", "add", "sub", "mul", "div", "neg", "relu", "tanh",
                         "identity", "flatten", "reshape"])
        if op in ("gemm", "matmul", "lpdist"):
            out = int(rng.integers(1, 5))
            if op == "lpdist":
                h = b.node("LpDist", [h, b.const(_values(rng, (out, width)))], domain=DOMAIN, p=p)
                uses_lp = True
            elif op == "gemm":
                inputs = [h, b.const(_values(rng, (width, out)))]
                if rng.random() < 0.7:
                    inputs.append(b.const(_values(rng, [(), (1,), (out,), (1, out)][int(rng.integers(4))])))
                h = b.node("Gemm", inputs)
            else:
                h = b.node("MatMul", [h, b.const(_values(rng, (width, out)))])
            width = out
        elif op in ("add", "sub", "mul", "div"):
            shape = [(), (1,), (width,), (1, width)][int(rng.integers(4))]
            c = b.const(_values(rng, shape, allow_zero=op != "div" or rng.random() < 0.2))
            first = op in ("add", "mul") and rng.random() < 0.5 or op == "sub" and rng.random() < 0.5
            h = b.node(op.capitalize(), [c, h] if first else [h, c])
        elif op == "flatten":
            h = b.node("Flatten", [h], axis=1)
        elif op == "reshape":
            h = b.node("Reshape", [h, b.const(np.array([-1, width], np.int64))])
        else:
            h = b.node({"neg": "Neg", "relu": "Relu", "tanh": "Tanh", "identity": "Identity"}[op], [h])
    classes = int(rng.integers(2, 4))
    b.node("Gemm", [h, b.const(_values(rng, (width, classes))), b.const(_values(rng, (classes,)))])
    b.nodes[-1].output[0] = "y"
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", input_width])
    graph = helper.make_graph(b.nodes, "fuzz", [x_info],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", classes])], b.inits)
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(DOMAIN, DOMAIN_VERSION)] if uses_lp else [])
    functions = [lp_dist_function(p, opset)] if uses_lp else []
    model = helper.make_model(graph, opset_imports=imports, functions=functions)
    model.ir_version = 8
    return model


def _points(rng, x, eps, count):
    """x itself, random float32 points of the box [x − ε, x + ε] ∩ [0, 1] and its corners (each rounded
    to float32 inward: a corner rounded outward would lie outside the certified box)."""
    x = x.astype(np.float64)  # the box is the verifier's, in float64
    lo, hi = np.clip(x - eps, *PIXELS), np.clip(x + eps, *PIXELS)
    inside = lo + (hi - lo) * rng.random((count, x.size))
    corners = np.array(list(itertools.product(*zip(lo, hi))))
    points = np.concatenate([x[None], inside, corners]).astype(np.float32)
    points = np.where(points < lo, np.nextafter(points, np.float32(np.inf)), points)
    return np.where(points > hi, np.nextafter(points, np.float32(-np.inf)), points)


def check_case(seed: int, tmp_path) -> tuple[int, int, list]:
    """(certified samples, points checked, violations) for one random graph."""
    rng = np.random.default_rng(10_000 + seed)
    model = random_graph(seed)
    path = tmp_path / f"fuzz{seed}.onnx"
    onnx.save(model, str(path))
    try:
        graph = load_graph(path)
    except Refused:
        return 0, 0, []
    d = graph.sample_shape[0]
    x = rng.random((12, d)).astype(np.float32)
    eps = float(rng.choice([0.0, 1e-4, 0.01, 0.1]))
    first = certify(graph, x, np.zeros(len(x), np.int64), eps)
    cert = certify(graph, x, first.predictions, eps)
    runners = [("ort", lambda z, s=ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]):
                s.run(None, {"x": z})[0]),
               ("reference-evaluator", lambda z, e=ReferenceEvaluator(model): e.run(None, {"x": z})[0])]
    violations, checked = [], 0
    with np.errstate(all="ignore"):
        for i in np.flatnonzero(cert.certified):
            points = _points(rng, x[i], eps, 24)
            low = cert.lower[i] - cert.runtime_error[i]
            high = cert.upper[i] + cert.runtime_error[i]
            for name, run in runners:
                logits = np.asarray(run(points), dtype=np.float64)
                checked += len(points)
                wrong = ~np.isfinite(logits).all(1) | (logits.argmax(1) != cert.labels[i])
                outside = ((logits < low) | (logits > high)).any(1)
                if wrong.any() or outside.any():
                    violations.append((seed, i, name, int(wrong.sum()), int(outside.sum())))
    return int(cert.certified.sum()), checked, violations


def _run(seeds, tmp_path):
    certified = checked = refused_or_empty = 0
    violations = []
    for seed in seeds:
        c, n, v = check_case(seed, tmp_path)
        certified, checked, violations = certified + c, checked + n, violations + v
        refused_or_empty += n == 0
    return certified, checked, refused_or_empty, violations


def test_random_graphs_never_break_a_certificate(tmp_path):
    certified, checked, _, violations = _run(range(400), tmp_path)
    assert violations == []
    assert certified > 1000 and checked > 50_000, "too few certified samples: the test would prove little"


@pytest.mark.slow
def test_random_graphs_never_break_a_certificate_long(tmp_path):
    certified, checked, _, violations = _run(range(400, 8400), tmp_path)
    assert violations == [] and certified > 50_000


def _mutate(model: onnx.ModelProto, rng) -> None:
    """One random corruption a hostile or broken file could carry."""
    g, kind = model.graph, int(rng.integers(0, 9))
    node = g.node[int(rng.integers(len(g.node)))]
    if kind == 0 and g.initializer:
        g.initializer[int(rng.integers(len(g.initializer)))].data_type = int(rng.choice([1, 2, 3, 6, 7, 10, 11, 16]))
    elif kind == 1 and g.initializer:
        tensor = g.initializer[int(rng.integers(len(g.initializer)))]
        if tensor.dims:
            tensor.dims[int(rng.integers(len(tensor.dims)))] = int(rng.integers(0, 5))
    elif kind == 2:
        node.op_type = str(rng.choice(["Add", "Sub", "Mul", "Div", "Neg", "Relu", "Tanh", "Identity", "Flatten",
                                       "Reshape", "Gemm", "MatMul", "Constant", "LpDist"]))
    elif kind == 3:
        if node.input and rng.random() < 0.5:
            del node.input[-1]
        else:
            node.input.append(g.initializer[0].name if g.initializer else "x")
    elif kind == 4:
        name = str(rng.choice(["p", "axis", "alpha", "transB", "allowzero", "beta", "transA", "value"]))
        node.attribute.append(helper.make_attribute(name, [1, 2.5, "s", [1, 2], [1.0]][int(rng.integers(5))]))
    elif kind == 5:
        model.opset_import[0].version = int(rng.integers(1, 25))
    elif kind == 6:
        node.domain = str(rng.choice(["", "ai.linfdist", "com.microsoft", "ai.onnx"]))
    elif kind == 7:
        g.input[0].type.tensor_type.elem_type = int(rng.choice([1, 10, 11, 7]))
    else:
        node.output.append("extra")


def test_malformed_graphs_are_refused_never_crash(tmp_path):
    """Random corruptions of valid graphs: load_graph accepts or refuses (one line), never raises anything else."""
    crashes = []
    for seed in range(1500):
        rng = np.random.default_rng(seed)
        model = random_graph(seed % 400)
        for _ in range(int(rng.integers(1, 4))):
            _mutate(model, rng)
        path = tmp_path / "mutated.onnx"
        try:
            onnx.save(model, str(path))
        except Exception:  # noqa: BLE001 - protobuf cannot even write it: nothing to load
            continue
        try:
            load_graph(path)
        except Refused as err:
            assert "\n" not in str(err)
        except Exception as err:  # noqa: BLE001 - the point of the test
            crashes.append((seed, type(err).__name__, str(err)[:80]))
    assert crashes == []
