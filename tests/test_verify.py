"""The independent verifier: reads exported graphs, refuses what it does not understand, agrees with torch."""

import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from linfdist.export import to_onnx
from linfdist.models import LinfDistNet, LinfDistNetConfig, LinfDistNetMLP, LinfDistNetMLPConfig
from linfdist.verify.certificates import certify, lipschitz
from linfdist.verify.errors import Refused
from linfdist.verify.graph import load_graph


def small_net(cls=LinfDistNet, p=math.inf, seed=0, **overrides):
    torch.manual_seed(seed)
    config_cls = LinfDistNetConfig if cls is LinfDistNet else LinfDistNetMLPConfig
    cfg = dict(input_shape=[1, 4, 4], depth=3, width=12, num_classes=4, mean=[0.4], std=[0.3], p=p, eps=0.05)
    if cls is LinfDistNetMLP:
        cfg["head_hidden"] = 8
    cfg.update(overrides)
    net = cls(config_cls(**cfg))
    net(torch.rand(64, *net.config.input_shape))  # running means for the shifts
    return net.eval()


def export(net, tmp_path, name="net.onnx", opset=None):
    return to_onnx(net, tmp_path / name, opset=opset)


def edited(tmp_path, source, edit, name="edited.onnx"):
    """Save a copy of an ONNX file after edit(proto) (the checker must still accept it)."""
    proto = onnx.load(str(source))
    edit(proto)
    path = tmp_path / name
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("cls", [LinfDistNet, LinfDistNetMLP])
@pytest.mark.parametrize("p", [math.inf, 8.0])
def test_reference_logits_match_torch_in_float64(cls, p, tmp_path):
    net = small_net(cls, p)
    graph = load_graph(export(net, tmp_path))
    x = torch.rand(20, 1, 4, 4)
    cert = certify(graph, x.numpy(), np.zeros(20), 0.01)
    with torch.no_grad():
        expected = net.double()(x.double()).numpy()
    np.testing.assert_allclose(cert.logits, expected, rtol=1e-12, atol=1e-12)
    assert (cert.reference_error < 1e-9).all() and (cert.reference_error > 0).all()


def test_lipschitz_bound_is_the_models_for_plain_nets(tmp_path):
    net = small_net()
    graph = load_graph(export(net, tmp_path))
    bound = lipschitz(graph)[-1][0]
    np.testing.assert_allclose(bound, net.lipschitz(), rtol=1e-12)
    assert (bound >= net.lipschitz()).all()


def test_finite_p_lipschitz_is_k_to_the_one_over_p(tmp_path):
    net = small_net(p=8.0, depth=1)
    bound = lipschitz(load_graph(export(net, tmp_path)))[-1][0]
    expected = 16 ** (1 / 8) / float(np.float32(0.3))  # the graph holds std in float32
    np.testing.assert_allclose(bound, expected, rtol=1e-9)
    assert (bound >= expected).all()


def test_certificates_agree_with_the_torch_path_on_the_bundled_model(tmp_path):
    from linfdist.certify import certify as torch_certify
    from linfdist.data import load_dataset
    from linfdist.export import export_checkpoint
    from linfdist.models import load_pretrained
    from linfdist.zoo import bundled_model_dir

    images, labels = load_dataset("mnist")
    x = torch.tensor(images[:300], dtype=torch.float32) / 255
    graph = load_graph(export_checkpoint(bundled_model_dir(), tmp_path / "default.onnx"))
    ours = certify(graph, x.numpy(), labels[:300], 0.1)
    theirs = torch_certify(load_pretrained(bundled_model_dir()), x, torch.from_numpy(labels[:300]), 0.1)
    assert np.array_equal(ours.margin, theirs.margin_certified.numpy())
    assert np.array_equal(ours.ibp, theirs.ibp_certified.numpy())
    assert 0.9 < ours.certified.mean() < 1


# --- refusals ---------------------------------------------------------------------------------

def test_tampered_body_reduce_min_is_refused(tmp_path):
    source = export(small_net(), tmp_path)

    def to_min(proto):
        (node,) = [n for n in proto.functions[0].node if n.op_type == "ReduceMax"]
        node.op_type = "ReduceMin"

    with pytest.raises(Refused, match="LpDist body"):
        load_graph(edited(tmp_path, source, to_min))


def _flip_axes(node) -> None:
    """Give a reduction its axes the other way: an input becomes an attribute, an attribute an input."""
    from onnx import helper

    if len(node.input) == 2:
        del node.input[1]
        node.attribute.append(helper.make_attribute("axes", [2]))
    else:
        del node.attribute[[a.name for a in node.attribute].index("axes")]
        node.input.append("axis_k")


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_reduction_axes_must_take_the_form_their_opset_defines(tmp_path, opset):
    """ReduceSum reads its axes from an input from opset 13, ReduceMax from 18: a body giving an attribute where
    the opset wants an input (or the reverse) is not what the opset defines, so it is refused."""

    from linfdist.export.lp_dist_function import AXES_INPUT_SINCE, lp_dist_function

    body = lp_dist_function(8.0, opset)
    assert load_graph(edited(tmp_path, export(small_net(p=8.0), tmp_path, opset=opset), lambda m: None))
    for op, since in AXES_INPUT_SINCE.items():
        (node,) = [n for n in body.node if n.op_type == op]
        assert (len(node.input) == 2) == (opset >= since)

    def flip(proto, op):
        (node,) = [n for n in proto.functions[0].node if n.op_type == op]
        _flip_axes(node)

    source = export(small_net(p=8.0), tmp_path, opset=opset)
    for op in AXES_INPUT_SINCE:  # ONNX's checker catches some of these; the body check refuses every one
        with pytest.raises(Refused, match=f"{op} takes its axes as|checker rejects"):
            load_graph(edited(tmp_path, source, lambda proto, op=op: flip(proto, op)))


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax"])
def test_the_body_check_itself_refuses_axes_in_the_wrong_form(opset, op):
    """Without ONNX's checker in the way (it misses some cases): the body check refuses either flip."""

    from linfdist.export.lp_dist_function import lp_dist_function
    from linfdist.verify.function_body import check_body

    body = lp_dist_function(8.0, opset)
    check_body(body)
    (node,) = [n for n in body.node if n.op_type == op]
    _flip_axes(node)
    with pytest.raises(Refused, match=f"{op} takes its axes as"):
        check_body(body)


def test_tampered_finite_p_exponent_is_refused(tmp_path):
    source = export(small_net(p=8.0), tmp_path)

    def halve_exponent(proto):
        for node in proto.functions[0].node:
            if node.output[0] == "exponent":
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(4.0, np.float32), "exponent"))

    with pytest.raises(Refused, match="LpDist body"):
        load_graph(edited(tmp_path, source, halve_exponent))


def test_node_p_that_differs_from_the_body_is_refused(tmp_path):
    source = export(small_net(), tmp_path)

    def claim_p8(proto):
        node = next(n for n in proto.graph.node if n.op_type == "LpDist")
        node.attribute[0].f = 8.0

    with pytest.raises(Refused, match="p = 8"):
        load_graph(edited(tmp_path, source, claim_p8))


def test_unknown_op_is_refused_with_node_name_and_type(tmp_path):
    source = export(small_net(LinfDistNetMLP), tmp_path)

    def leaky(proto):
        node = next(n for n in proto.graph.node if n.op_type == "Relu")
        node.op_type = "LeakyRelu"

    with pytest.raises(Refused, match=r"node 'head1' \(LeakyRelu\): op not supported"):
        load_graph(edited(tmp_path, source, leaky))


def test_two_computed_inputs_are_refused(tmp_path):
    source = export(small_net(), tmp_path)

    def square(proto):
        node = next(n for n in proto.graph.node if n.op_type == "Add")
        node.input[1] = node.input[0]

    with pytest.raises(Refused, match="two computed inputs"):
        load_graph(edited(tmp_path, source, square))


def test_gemm_with_alpha_is_refused(tmp_path):
    source = export(small_net(LinfDistNetMLP), tmp_path)

    def scale(proto):
        node = next(n for n in proto.graph.node if n.op_type == "Gemm")
        node.attribute.append(helper.make_attribute("alpha", 2.0))

    with pytest.raises(Refused, match="alpha"):
        load_graph(edited(tmp_path, source, scale))


def test_garbage_and_foreign_functions_are_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all" * 10)
    with pytest.raises(Refused, match="not a readable ONNX file|checker"):
        load_graph(junk)
    source = export(small_net(), tmp_path)

    def rename_function(proto):
        proto.functions[0].name = "Other"
        for node in proto.graph.node:
            if node.op_type == "LpDist":
                node.op_type = "Other"

    with pytest.raises(Refused, match="Other"):
        load_graph(edited(tmp_path, source, rename_function))


def tiny_graph(tmp_path, nodes, initializers, in_dim=2, out_dim=2, name="g.onnx", opset=18):
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out_dim])],
                              [numpy_helper.from_array(v if getattr(v, "dtype", None) == np.int64 else
                                                       np.asarray(v, np.float32), k) for k, v in initializers.items()])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_hand_built_graph_of_every_standard_rule_evaluates_like_numpy(tmp_path):
    w1 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])
    nodes = [helper.make_node("Mul", ["x", "two"], ["a"]), helper.make_node("Sub", ["one", "a"], ["b"]),
             helper.make_node("MatMul", ["b", "w1"], ["c"]), helper.make_node("Add", ["c", "bias"], ["d"]),
             helper.make_node("Tanh", ["d"], ["e"]), helper.make_node("Reshape", ["e", "shape"], ["f"]),
             helper.make_node("Identity", ["f"], ["g"]), helper.make_node("Neg", ["g"], ["h"]),
             helper.make_node("Gemm", ["h", "w2"], ["y"], transB=1)]
    inits = {"two": 2.0, "one": [1.0, 0.5], "w1": w1, "bias": [0.1, -0.2, 0.3], "w2": np.ones((2, 3)),
             "shape": np.array([-1, 3], np.int64)}
    graph = load_graph(tiny_graph(tmp_path, nodes, inits))
    x = np.random.default_rng(0).random((5, 2)).astype(np.float32)
    cert = certify(graph, x, np.zeros(5), 0.0)
    bias = np.float32([0.1, -0.2, 0.3]).astype(np.float64)  # constants are float32 in the graph
    expected = -np.tanh((np.array([1.0, 0.5]) - 2 * x.astype(np.float64)) @ w1 + bias) @ np.ones((3, 2))
    np.testing.assert_allclose(cert.logits, expected, rtol=1e-12)
    # Tanh is 1-Lipschitz; the Lipschitz bound is |w2| |w1| * 2
    np.testing.assert_allclose(lipschitz(graph)[-1][0], (np.ones((2, 3)) @ (np.abs(w1).T @ [2.0, 2.0])), rtol=1e-9)


# --- floating point ---------------------------------------------------------------------------

def rounding_trap(tmp_path):
    """One ℓ∞-dist layer (2 neurons + bias) on one input where float32 ranks the logits the other
    way round from exact arithmetic: y0 = |1 − 0| + 0.9·2^-24 rounds down to 1, while
    y1 = |1 − 2^-26| + (2^-24 + 2^-30) is smaller but rounds up twice, to 1 + 2^-23."""
    f32 = np.float32
    w = np.array([[0.0], [2.0**-26]], f32)
    b = np.array([0.9 * 2.0**-24, 2.0**-24 + 2.0**-30], f32)
    nodes = [helper.make_node("LpDist", ["x", "w"], ["d"], domain="ai.linfdist", p=math.inf),
             helper.make_node("Add", ["d", "b"], ["s"]), helper.make_node("Neg", ["s"], ["y"])]
    from linfdist.export.lp_dist_function import lp_dist_function

    graph = helper.make_graph(nodes, "trap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.linfdist", 1)],
                              functions=[lp_dist_function(math.inf, 18)])
    path = tmp_path / "trap.onnx"
    onnx.save(model, str(path))
    exact = [-(abs(Fraction(1) - Fraction(float(w[i, 0]))) + Fraction(float(b[i]))) for i in range(2)]
    return path, np.array([[1.0]], f32), exact


def test_near_boundary_case_naive_float32_margin_certifies_but_the_sound_one_does_not(tmp_path):
    import onnxruntime as ort

    path, x, exact = rounding_trap(tmp_path)
    f32 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][0]
    eps = 2.0**-27
    naive_margin = float(f32[0]) - float(f32[1])
    assert naive_margin > 2 * 1.0 * eps, "the naive float32 margin check certifies class 0"
    assert exact[1] > exact[0], "but in exact arithmetic class 1 wins"
    cert = certify(load_graph(path), x, np.array([0]), eps)
    assert not cert.certified.any() and not cert.margin.any() and not cert.ibp.any()
    assert not cert.runtime_margin(f32[None]).any()


def test_rounding_bound_covers_float32_runtimes(tmp_path):
    import onnxruntime as ort

    net = small_net(LinfDistNetMLP, width=40)
    path = export(net, tmp_path)
    x = torch.rand(200, 1, 4, 4).numpy()
    cert = certify(load_graph(path), x, np.zeros(200), 0.05)
    ort_logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    with torch.no_grad():
        torch_logits = net.float()(torch.from_numpy(x)).numpy()
    for logits in (ort_logits, torch_logits):
        gap = np.abs(logits.astype(np.float64) - cert.logits)
        assert (gap <= cert.runtime_error + cert.reference_error).all()
        assert (cert.runtime_error < 1e-3).all()  # worst-case γ_K·|x||W| of the head: loose, not useless


@pytest.mark.parametrize("target,ok", [([0, -1], True), ([-1, 3], True), ([0, 3], True), ([1, -1], False),
                                       ([-1, -1], False), ([0, 4], False), ([3], False)])
def test_reshape_must_keep_the_batch_axis(target, ok, tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Gemm", ["r", "w"], ["y"])]
    inits = {"shape": np.array(target, np.int64), "w": np.ones((3, 2))}
    path = tiny_graph(tmp_path, nodes, inits, in_dim=3)
    if ok:
        assert load_graph(path).steps[0].rule.out_shape == (3,)
    else:
        with pytest.raises(Refused, match="Reshape|checker rejects"):
            load_graph(path)


def test_initializers_that_are_also_graph_inputs_are_refused(tmp_path):
    """A caller may feed an initializer listed in graph.input (ORT lets it): it is no constant."""
    source = export(small_net(), tmp_path)

    def expose(proto):
        lp = next(n for n in proto.graph.node if n.op_type == "LpDist")
        weight = next(i for i in proto.graph.initializer if i.name == lp.input[1])
        proto.graph.input.append(helper.make_tensor_value_info(weight.name, weight.data_type, list(weight.dims)))

    with pytest.raises(Refused, match="also graph inputs"):
        load_graph(edited(tmp_path, source, expose))


@pytest.mark.parametrize("attribute", [
    helper.make_attribute("p", [8.0, 9.0]), helper.make_attribute("p", 8), helper.make_attribute("p", "inf"),
    helper.make_attribute("p", numpy_helper.from_array(np.array(8.0, np.float32))),
])
def test_attributes_of_another_onnx_type_are_refused(attribute, tmp_path):
    source = export(small_net(p=8.0), tmp_path)

    def retype(proto):
        for node in proto.graph.node:
            if node.op_type == "LpDist":
                del node.attribute[:]
                node.attribute.append(attribute)

    with pytest.raises(Refused, match=r"node .*LpDist.*attribute 'p' must be of type FLOAT"):
        load_graph(edited(tmp_path, source, retype))


def test_an_int_gemm_flag_must_be_an_int(tmp_path):
    """(The ONNX checker refuses standard ops' mistyped attributes first; the rule's own check backs it.)"""
    source = export(small_net(LinfDistNetMLP), tmp_path)

    def float_flag(proto):
        node = next(n for n in proto.graph.node if n.op_type == "Gemm")
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("transB", 1.0))

    with pytest.raises(Refused, match="transB.*INT"):
        load_graph(edited(tmp_path, source, float_flag))


@pytest.mark.parametrize("shape, refused", [((4, 1), True), ((2, 4), True), ((1, 4), False), ((4,), False),
                                            ((), False), ((1, 1), False)])
def test_gemm_bias_follows_onnx_broadcasting(shape, refused, tmp_path):
    """C [M, 1] passes the checker, but ONNX adds it per sample row: never read as a per-class bias."""
    weight = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    bias = np.arange(math.prod(shape), dtype=np.float32).reshape(shape) + 1
    path = tiny_graph(tmp_path, [helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="fc")],
                      {"W": weight, "C": bias}, in_dim=2, out_dim=4)
    if refused:
        with pytest.raises(Refused, match=r"node 'fc' \(Gemm\): the bias C of shape"):
            load_graph(path)
        return
    graph = load_graph(path)
    x = np.array([[0.25, -1.0]], dtype=np.float32)
    import onnxruntime as ort

    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(graph.steps[0].rule.value(x.astype(np.float64)), expected, rtol=1e-6)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shape, refused", [((3, 4), True), ((1, 1, 4), True), ((1, 4), False), ((4,), False),
                                            ((1,), False)])
def test_elementwise_constants_must_not_broadcast_over_the_batch(op, shape, refused, tmp_path):
    constant = np.full(shape, 2.0, dtype=np.float32)
    path = tiny_graph(tmp_path, [helper.make_node(op, ["x", "c"], ["y"], name="e")], {"c": constant},
                      in_dim=4, out_dim=4)
    if refused:
        with pytest.raises(Refused, match=f"node 'e' \\({op}\\): constant of shape|the ONNX checker rejects"):
            load_graph(path)
    else:
        assert load_graph(path).steps[0].rule.out_shape == (4,)
