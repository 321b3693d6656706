"""Soundness of the independent verifier: no attack, sample or grid point ever breaks a certificate."""

import itertools
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from linfdist.attack import pgd
from linfdist.export import export_checkpoint, to_onnx
from linfdist.models import LinfDistNet, LinfDistNetConfig, LinfDistNetMLP, LinfDistNetMLPConfig
from linfdist.verify.certificates import certify
from linfdist.verify.graph import load_graph


def tiny(kind: str, dims: int, seed: int):
    torch.manual_seed(seed)
    common = dict(input_shape=[1, 1, dims], depth=3, width=6, num_classes=3, mean=[0.5], std=[0.3])
    if kind == "mlp":
        net = LinfDistNetMLP(LinfDistNetMLPConfig(**common, head_hidden=5))
    else:
        net = LinfDistNet(LinfDistNetConfig(**common, p=8.0 if kind == "p8" else math.inf))
    net(torch.rand(64, 1, 1, dims))
    return net.eval()


def box_grid(x: np.ndarray, eps: float) -> torch.Tensor:
    """A dense grid of float32 points inside the clipped box around float32 x (corners included):
    float32 rounding may not step outside the box, so the ends are rounded inwards."""
    dims = x.size
    lo = np.maximum(x.astype(np.float64) - eps, 0.0)
    hi = np.minimum(x.astype(np.float64) + eps, 1.0)
    lo32 = np.where(lo.astype(np.float32) < lo, np.nextafter(lo.astype(np.float32), np.float32(1)), lo.astype(np.float32))
    hi32 = np.where(hi.astype(np.float32) > hi, np.nextafter(hi.astype(np.float32), np.float32(0)), hi.astype(np.float32))
    steps = {2: 41, 3: 13}[dims]
    axes = [np.linspace(a, b, steps) for a, b in zip(lo32.ravel(), hi32.ravel())]
    points = np.array(list(itertools.product(*axes))).astype(np.float32)
    points = np.clip(points, lo32.ravel(), hi32.ravel())
    return torch.from_numpy(points.reshape(-1, *x.shape))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["plain", "mlp", "p8"])
def test_dense_grid_never_breaks_a_certificate_and_bounds_hold(kind, dims, seed, tmp_path):
    """Brute force over the whole clipped ε-box of tiny nets, in float32 (torch and ORT) and float64."""
    net = tiny(kind, dims, seed)
    path = to_onnx(net, tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(80, 1, 1, dims)
    with torch.no_grad():
        labels = net(x).argmax(1).numpy()
    eps = 0.04
    cert = certify(load_graph(path), x.numpy(), labels, eps)
    net64 = tiny(kind, dims, seed).double()
    checked = 0
    for i in range(len(x)):
        points = box_grid(x[i].numpy(), eps)
        with torch.no_grad():
            exact = net64(points.double()).numpy()
            f32 = [net(points).numpy(), session.run(None, {"pixels": points.numpy()})[0]]
        assert (exact >= cert.lower[i]).all() and (exact <= cert.upper[i]).all()
        for logits in f32:
            assert (logits >= cert.lower[i] - cert.runtime_error[i]).all()
            assert (logits <= cert.upper[i] + cert.runtime_error[i]).all()
            if cert.certified[i]:
                assert (logits.argmax(1) == labels[i]).all()
        checked += bool(cert.certified[i])
    assert checked >= 3, "too few certified samples: the test would prove little"


def test_strong_attacks_never_break_a_certificate_of_the_bundled_model(tmp_path):
    """PGD with restarts and random box corners on 100 certified MNIST digits: predictions never change."""
    from linfdist.data import load_dataset
    from linfdist.models import load_pretrained
    from linfdist.zoo import bundled_model_dir

    images, labels = load_dataset("mnist")
    x = torch.tensor(images[:160], dtype=torch.float32) / 255
    y = torch.from_numpy(labels[:160])
    path = export_checkpoint(bundled_model_dir(), tmp_path / "default.onnx")
    eps = 0.1
    cert = certify(load_graph(path), x.numpy(), y.numpy(), eps)
    keep = torch.from_numpy(np.flatnonzero(cert.certified)[:100])
    assert len(keep) == 100
    x, y = x[keep], y[keep]
    model = load_pretrained(bundled_model_dir())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    candidates = [pgd(model, x, y, eps, steps=60, generator=generator) for _ in range(4)]
    signs = torch.randint(0, 2, (8, *x.shape), generator=generator).float() * 2 - 1
    candidates += [(x + eps * s).clamp(0, 1) for s in signs]
    for adv in candidates:
        assert (adv - x).abs().max() <= eps + 1e-7
        with torch.no_grad():
            assert (model(adv).argmax(1) == y).all()
        assert (session.run(None, {"pixels": adv.numpy()})[0].argmax(1) == y.numpy()).all()


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_logits_past_float32_range_are_never_certified(tmp_path):
    """Reference logits 3.5e38 < 4e38 say class 1; every float32 runtime computes inf, inf (argmax 0)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.array([[1.5e38, 2e38], [0, 0]], np.float32)
    bias = np.array([2e38, 2e38], np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                              [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "C")])
    path = tmp_path / "overflow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = np.array([[1.0, 0.0]], np.float32)
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.isinf(runtime).all() and runtime.argmax(1)[0] == 0
    cert = certify(load_graph(path), x, np.array([1]), 0.0)
    assert cert.correct[0] and not cert.in_range[0]
    assert not cert.certified[0] and not cert.runtime_margin(runtime)[0]


@pytest.mark.parametrize("scale, certified", [(1e30, True), (1e38, False)])
def test_an_intermediate_past_float32_range_un_certifies_even_when_the_output_is_small(scale, certified, tmp_path):
    """x · scale · 10 · 1/(10 scale): at scale 1e38 the middle product overflows in float32 although the
    logits would be the pixels again."""
    from onnx import TensorProto, helper, numpy_helper

    factors = {"a": np.full(2, scale), "b": np.full(2, 10.0), "c": np.full(2, 1 / (10 * scale))}
    nodes = [helper.make_node("Mul", [i, f], [o], name=o) for i, f, o in (("x", "a", "h"), ("h", "b", "g"),
                                                                            ("g", "c", "y"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in factors.items()])
    path = tmp_path / "mul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = np.array([[1.0, 0.0]], np.float32)
    cert = certify(load_graph(path), x, np.array([0]), 0.01)
    assert bool(cert.in_range[0]) == certified and bool(cert.certified[0]) == certified


def _ort_unary(tmp_path, op, exponent=None):
    """An ONNX Runtime session computing op(x) (Pow with a constant float32 exponent) elementwise."""
    from onnx import TensorProto, helper, numpy_helper

    inputs, inits = ["x"], []
    if exponent is not None:
        inputs.append("e")
        inits.append(numpy_helper.from_array(np.float32(exponent).reshape(()), "e"))
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0].astype(np.float64)


def _magnitudes(rng, low_exponent, high_exponent, n):
    """float32 magnitudes spread log-uniformly over [2^low, 2^high], subnormals included, and the edges."""
    values = np.exp2(rng.uniform(low_exponent, high_exponent, n)).astype(np.float32)
    edges = np.float32([0.0, 2.0**-149, 2.0**-126, np.nextafter(np.float32(2.0**-126), np.float32(0)), 1.0])
    return np.concatenate([values, edges[(edges >= 0) & (edges <= 2.0**high_exponent)]])


def test_onnx_runtime_tanh_stays_within_the_rule(tmp_path):
    """The Tanh rule's allowance (ELEMENTARY_ULPS ulps + the smallest normal) holds for ORT everywhere,
    subnormal arguments and the ones just above 2^-126 (where ORT errs by ~160 subnormal units) included."""
    from linfdist.verify.rules import F32, Tanh

    rng = np.random.default_rng(0)
    magnitudes = _magnitudes(rng, -149, 7, 400_000)
    x = np.concatenate([magnitudes, -magnitudes])
    computed, exact = _ort_unary(tmp_path, "Tanh")(x), np.tanh(x.astype(np.float64))
    allowed = Tanh.rounding(None, np.abs(x), np.abs(exact), F32)
    assert (np.abs(computed - exact) <= allowed).all()
    # the absolute term is needed: the relative one alone would not cover ORT near 2^-126
    assert (np.abs(computed - exact) > 16 * 2 * F32.u * np.abs(exact) + F32.underflow).any()


@pytest.mark.parametrize("p", [1.5, 8.0, 37.25, 999.5, 1000.0])
def test_onnx_runtime_pow_stays_within_the_lp_rule(p, tmp_path):
    """The finite-p LpDist body raises ratios in [0, 1] to p and sums in [1, K] to 1/p: ORT's Pow errs by at
    most ELEMENTARY_ULPS ulps of the result plus the smallest normal (the k · tiny term of its error bound)."""
    from linfdist.verify.rules import ELEMENTARY_ULPS, F32

    rng = np.random.default_rng(1)
    eta = ELEMENTARY_ULPS * 2 * F32.u
    ratios = _magnitudes(rng, -149, 0, 300_000)
    sums = (1 + rng.uniform(0, 5120, 100_000)).astype(np.float32)
    for base, exponent in ((ratios, np.float32(p)), (sums, np.float32(1 / p))):
        computed = _ort_unary(tmp_path, "Pow", exponent)(base)
        exact = base.astype(np.float64) ** np.float64(exponent)
        assert (np.abs(computed - exact) <= eta * exact + F32.tiny).all(), (p, exponent)


def test_a_scalar_scale_that_onnx_runtime_folds_into_matmul_is_modelled(tmp_path):
    """x / 1e10 @ W (W ~ 3e38) is finite op by op, but ORT's default optimisations compute (x @ W) / 1e10,
    whose products overflow: no certificate may stand on the op-by-op values."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Div", ["x", "s"], ["h"], name="scale"),
             helper.make_node("MatMul", ["h", "W"], ["g"], name="mm"),
             helper.make_node("Gemm", ["g", "V"], ["y"], name="out")]
    inits = {"s": np.float32(1e10).reshape(()), "W": np.full((2, 2), 3e38, np.float32),
             "V": np.array([[1e-28, 0], [0, 2e-28]], np.float32)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / "fold.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = np.array([[0.9, 0.8]], np.float32)
    folded = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.isfinite(folded).all()  # what a default ORT session computes
    cert = certify(load_graph(path), x, np.array([1]), 0.0)
    assert cert.correct[0] and not cert.in_range[0] and not cert.certified[0]
