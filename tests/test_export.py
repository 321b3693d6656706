"""ONNX export: the LpDist function op, ORT parity on MNIST, metadata, chunked sessions, bad input."""

import json
import math

import numpy as np
import onnx
import pytest
import torch

from linfdist.cli import main
from linfdist.data import load_dataset
from linfdist.evaluate import pixels
from linfdist.export import ExportError, export_checkpoint, session, to_onnx
from linfdist.export.lp_dist_function import DOMAIN, OP
from linfdist.models import LinfDistNet, LinfDistNetConfig, LinfDistNetMLP, LinfDistNetMLPConfig, load_pretrained
from linfdist.zoo import bundled_model_dir


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    return export_checkpoint(bundled_model_dir(), tmp_path_factory.mktemp("onnx") / "default.onnx")


def test_every_distance_layer_is_one_function_op(default_onnx):
    model = onnx.load(default_onnx)
    onnx.checker.check_model(model, full_check=True)
    dist = [n for n in model.graph.node if n.op_type == OP]
    assert len(dist) == 5 and all(n.domain == DOMAIN for n in dist)
    assert all(math.isinf(a.f) for n in dist for a in n.attribute if a.name == "p")
    (function,) = model.functions
    assert (function.domain, function.name) == (DOMAIN, OP)
    assert [n.op_type for n in function.node if n.op_type != "Constant"] == ["Unsqueeze", "Unsqueeze", "Sub", "Abs",
                                                                               "ReduceMax"]
    standard = {n.op_type for n in model.graph.node if n.domain == ""}
    assert standard == {"Flatten", "Sub", "Div", "Add", "Neg"}
    assert {i.name for i in model.graph.initializer} >= {"trunk.layers.0.weight", "pixel_mean", "pixel_std"}


def test_metadata_says_what_a_verifier_needs(default_onnx):
    import hashlib

    meta = {p.key: p.value for p in onnx.load(default_onnx).metadata_props}
    weights = (bundled_model_dir() / "model.safetensors").read_bytes()
    assert json.loads(meta["linfdist.source_sha256"]) == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert meta["linfdist.architecture"] == "LinfDistNet" and meta["linfdist.dataset"] == "mnist"
    assert float(meta["linfdist.eps"]) == 0.1 and meta["linfdist.p"] == "inf"
    from linfdist.zoo.registry import get_entry

    assert float(meta["linfdist.claimed.certified_accuracy"]) == get_entry("default").certified_accuracy
    assert "0.1307" in meta["linfdist.preprocessing"] and "linfdist.version" in meta


def test_ort_logits_equal_torch_bitwise_on_the_mnist_test_set(default_onnx):
    """sub/abs/max, the normalisation, shifts and bias are exactly rounded: bit-identical logits."""
    images, _ = load_dataset("mnist", "test")
    x = pixels(images)
    model = load_pretrained(bundled_model_dir()).eval()
    with torch.no_grad():
        want = model(x).numpy()
    got = session(default_onnx).run(None, {"pixels": x.numpy()})[0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("n", [1, 7, 512])
def test_dynamic_batch(default_onnx, n):
    x = torch.rand(n, 1, 28, 28)
    model = load_pretrained(bundled_model_dir()).eval()
    with torch.no_grad():
        want = model(x).numpy()
    assert np.array_equal(session(default_onnx).run(None, {"pixels": x.numpy()})[0], want)


def test_chunking_bounds_the_intermediate_and_changes_nothing(default_onnx):
    x = torch.rand(50, 1, 28, 28).numpy()
    whole = session(default_onnx, max_elements=1 << 30)
    tiny = session(default_onnx, max_elements=1)
    assert whole.chunk >= 50 and tiny.chunk == 1
    assert np.array_equal(whole.run(None, {"pixels": x})[0], tiny.run(None, {"pixels": x})[0])


def test_fixed_batch_and_opsets(tmp_path):
    model = LinfDistNet(LinfDistNetConfig(input_shape=[1, 5, 5], depth=3, width=12)).eval()
    x = torch.rand(4, 1, 5, 5)
    with torch.no_grad():
        want = model(x).numpy()
    for opset in (13, 17, 18, 21):
        path = to_onnx(model, tmp_path / f"m{opset}.onnx", opset=opset, batch=4)
        dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_value == 4
        assert np.array_equal(session(path).run(None, {"pixels": x.numpy()})[0], want), opset


def test_mlp_head_and_finite_p_match_within_rounding(tmp_path):
    torch.manual_seed(0)
    mlp = LinfDistNetMLP(LinfDistNetMLPConfig(input_shape=[3, 4, 4], depth=3, width=16, head_hidden=8,
                                              mean=[0.5, 0.4, 0.3], std=[0.2]))
    mlp(torch.rand(64, 3, 4, 4))  # running means away from zero
    mlp.eval()
    net8 = LinfDistNet(LinfDistNetConfig(input_shape=[1, 4, 4], depth=3, width=16, p=8.0)).eval()
    for model, x in ((mlp, torch.rand(9, 3, 4, 4)), (net8, torch.rand(9, 1, 4, 4))):
        path = to_onnx(model, tmp_path / "m.onnx")
        with torch.no_grad():
            want = model(x).numpy()
        got = session(path).run(None, {"pixels": x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert (got.argmax(1) == want.argmax(1)).all()


def _net():
    return LinfDistNet(LinfDistNetConfig(input_shape=[1, 3, 3], depth=2, width=4)).eval()


@pytest.mark.parametrize("breaks, message", [
    (lambda m: m.trunk.layers.append(torch.nn.Conv2d(1, 1, 1)), "does not know layer"),
    (lambda m: setattr(m.trunk.layers[0], "p", 0.5), "share one p"),
    (lambda m: m.set_p(0.5), "p must be >= 1"),
    (lambda m: m.trunk.layers[1].weight.data.fill_(float("nan")), "NaN"),
])
def test_bad_models_are_refused_and_nothing_is_written(tmp_path, breaks, message):
    model = _net()
    breaks(model)
    with pytest.raises(ExportError, match=message):
        to_onnx(model, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "d.onnx"
    assert main(["export", "-o", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert main(["export", "-o", str(out), "--batch", "many"]) == 2
    assert "--batch must be" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "-o", str(out)]) == 2
    assert "not a linfdist checkpoint folder" in capsys.readouterr().err
    assert main(["export", "mnist-5x512-eps0.3", "-o", str(tmp_path / "z.onnx")]) == 0  # a zoo name
    assert main(["export", str(out), "-o", str(tmp_path / "again.onnx")]) == 2  # an .onnx has no weights to export
    assert "is an ONNX file" in capsys.readouterr().err
    assert main(["export", "-o", str(out), "--opset", "9"]) == 2
    assert "opset 9 is not supported" in capsys.readouterr().err


def test_readme_deploy_snippet_runs_and_agrees_with_linfdist(default_onnx, tmp_path, monkeypatch, capsys):
    """The README's onnxruntime + numpy snippet, run on a real test image, certifies as linfdist does."""
    import re
    import shutil
    from pathlib import Path

    from linfdist.certify import certify

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- deploy-snippet -->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert not re.search(r"^\s*(import|from) (torch|linfdist)", code, re.M)
    shutil.copy(default_onnx, tmp_path / "default.onnx")
    monkeypatch.chdir(tmp_path)
    images, labels = load_dataset("mnist", "test")
    model = load_pretrained(bundled_model_dir()).eval()
    certified = []
    for i in range(5):
        image = pixels(images[i: i + 1])
        snippet = code.replace("np.zeros((1, 1, 28, 28), np.float32)", "IMAGE")
        scope = {"IMAGE": image.numpy()}
        exec(snippet, scope)
        cert = certify(model, image, torch.from_numpy(labels[i: i + 1]).long(), 0.1)
        assert scope["label"] == int(cert.predictions[0])
        certified.append(scope["certified"])
        if scope["certified"]:
            assert bool(cert.margin_certified[0]), "the snippet certified what linfdist refuses"
    assert any(certified)


def test_large_models_keep_weights_in_external_data(tmp_path, monkeypatch):
    from linfdist.export import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    model = _net()
    path = to_onnx(model, tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    x = torch.rand(3, 1, 3, 3)
    with torch.no_grad():
        want = model(x).numpy()
    assert np.array_equal(session(path).run(None, {"pixels": x.numpy()})[0], want)


@pytest.mark.parametrize("make", [
    lambda: load_pretrained(bundled_model_dir()),
    lambda: LinfDistNetMLP(LinfDistNetMLPConfig(input_shape=[3, 4, 4], depth=3, width=16, head_hidden=8)),
    lambda: LinfDistNet(LinfDistNetConfig(input_shape=[1, 4, 4], depth=3, width=16, p=8.0)),
])
def test_the_inlined_export_computes_the_same_logits_with_standard_ops(make, tmp_path):
    """--inline: the LpDist functions replaced by their bodies; ORT, onnx's reference evaluator and onnx2torch
    (where installed) give the original's logits."""
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    model = make().eval()
    original, inlined = to_onnx(model, tmp_path / "a.onnx"), to_onnx(model, tmp_path / "b.onnx", inline=True)
    proto = onnx.load(str(inlined))
    assert not proto.functions and {o.domain for o in proto.opset_import} <= {""}
    assert {n.op_type for n in proto.graph.node}.isdisjoint({"LpDist"}) and proto.opset_import[0].version == 17
    x = np.random.default_rng(1).random((6, *model.config.input_shape)).astype(np.float32)
    want = session(original).run(None, {"pixels": x})[0]
    np.testing.assert_array_equal(session(inlined).run(None, {"pixels": x})[0], want)
    np.testing.assert_allclose(ReferenceEvaluator(proto).run(None, {"pixels": x})[0], want, rtol=1e-5, atol=1e-5)
    onnx2torch = pytest.importorskip("onnx2torch")
    with torch.no_grad():
        converted = onnx2torch.convert(proto)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(converted, want, rtol=1e-5, atol=1e-5)


def test_the_vnnlib_bundle_lists_the_inlined_model(tmp_path):
    from linfdist.verify.vnnlib import write_properties

    path = export_checkpoint(bundled_model_dir(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    folder = write_properties(tmp_path / "props", path, x, np.array([1, 2]), 0.1, 10)
    rows = (folder / "instances.csv").read_text().splitlines()
    assert rows[0].startswith("m.inlined.onnx,prop_00000.vnnlib")
    flat = onnx.load(str(folder / "m.inlined.onnx"))
    assert not flat.functions and flat.opset_import[0].version == 17
    np.testing.assert_array_equal(session(folder / "m.inlined.onnx").run(None, {"pixels": x})[0],
                                  session(path).run(None, {"pixels": x})[0])
