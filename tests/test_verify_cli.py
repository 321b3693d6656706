"""The verifier's command lines, torch-free runs, cross-runtime reports and VNN-LIB output."""

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from linfdist.export import export_checkpoint
from linfdist.verify.compare import pixels, verify_dataset
from linfdist.verify.graph import load_graph
from linfdist.verify.runtimes import REFERENCE, Runtime, ort_runtimes
from linfdist.zoo import bundled_model_dir

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    return export_checkpoint(bundled_model_dir(), tmp_path_factory.mktemp("onnx") / "default.onnx")


def run_verifier(*args, block_torch=True):
    code = (BLOCK_TORCH if block_torch else "") + \
        "import sys; from linfdist.verify.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_python_m_verify_runs_with_torch_blocked(default_onnx, tmp_path):
    report = tmp_path / "r.json"
    result = run_verifier(default_onnx, "--limit", "100", "--json", report, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "torch" not in result.stderr
    data = json.loads(report.read_text())
    rows = {r["name"]: r for r in data["runtimes"]}
    assert rows["reference"]["certified_accuracy"] == data["certified_accuracy"] > 90
    assert rows["ort-cpu"]["clean_accuracy"] == data["clean_accuracy"]
    assert rows["ort-cpu"]["outside_rounding_bound"] == 0
    assert "needs torch" in rows["torch-cpu"]["reason"] and rows["torch-cpu"]["clean_accuracy"] is None
    assert "unavailable: needs torch" in result.stdout
    assert data["claims"]["checked"] is False and "--limit" in data["claims"]["reason"]


def test_python_m_verify_refuses_an_unsupported_op_and_exits_non_zero(default_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(default_onnx))
    next(n for n in proto.graph.node if n.op_type == "Neg").op_type = "Softmax"
    bad = tmp_path / "softmax.onnx"
    onnx.save(proto, str(bad))
    result = run_verifier(bad, "--limit", "5", "--quiet")
    assert result.returncode == 2
    assert "node 'logits' (Softmax): op not supported" in result.stderr
    assert run_verifier(bundled_model_dir()).returncode == 2  # folders need `linfdist verify`


def test_as_module_entry_point(default_onnx):
    result = subprocess.run([sys.executable, "-m", "linfdist.verify", str(default_onnx), "--limit", "20", "--quiet",
                             "--runtimes", "reference"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "reference" in result.stdout and "ort-cpu" not in result.stdout


def test_full_test_set_checks_the_model_cards_claims(default_onnx, tmp_path):
    """The bundled card's numbers are re-derived by the verifier over all 10k images."""
    from linfdist.data import load_dataset

    images, labels = load_dataset("mnist")
    graph = load_graph(default_onnx)
    runtimes = [Runtime(REFERENCE, "float64")] + ort_runtimes(graph)
    report = verify_dataset(graph, images, labels, 0.1, "mnist", runtimes, progress=False, full_split=True)
    assert report.claims["checked"] and report.claims["agrees"], report.claims
    ort_cpu = next(r for r in report.runtimes if r.name == "ort-cpu")
    assert ort_cpu.outside_rounding_bound == 0 and ort_cpu.differing == []
    assert next(r for r in report.runtimes if r.name == "ort-cuda").reason


def test_a_runtime_that_disagrees_is_reported_sample_by_sample(default_onnx):
    from linfdist.data import load_dataset

    images, labels = load_dataset("mnist")
    graph = load_graph(default_onnx)
    session = ort_runtimes(graph)[0]

    def broken(x):
        out = session.logits(x)
        out[3] = out[3][::-1]  # sample 3 gets the wrong class
        out[5] += np.float32(1e-3)  # sample 5 drifts beyond any rounding bound
        return out

    runtimes = [Runtime(REFERENCE, "float64"), Runtime("broken", "test double", broken)]
    began = time.perf_counter()
    report = verify_dataset(graph, images[:40], labels[:40], 0.1, "mnist", runtimes, batch_size=16, progress=False)
    # the run's own time, whatever the batches (the report rounds it to the millisecond)
    assert 0 < report.seconds <= time.perf_counter() - began + 0.0005
    row = report.runtimes[1]
    assert [d["index"] for d in row.differing] == [3, 19, 35]  # sample 3 of each batch
    assert row.outside_rounding_bound == 6 and row.max_abs_dlogit > 1e-4


def parse_vnnlib(text):
    lower = {int(i): float(v) for i, v in re.findall(r"\(assert \(>= X_(\d+) ([^)]+)\)\)", text)}
    upper = {int(i): float(v) for i, v in re.findall(r"\(assert \(<= X_(\d+) ([^)]+)\)\)", text)}
    unsafe = [(int(j), int(y)) for j, y in re.findall(r"\(>= Y_(\d+) Y_(\d+)\)", text)]
    return lower, upper, unsafe


def test_vnnlib_properties_describe_the_certified_box(default_onnx, tmp_path):
    from linfdist.data import load_dataset

    images, labels = load_dataset("mnist")
    folder = tmp_path / "vnn"
    result = run_verifier(default_onnx, "--limit", "3", "--eps", "0.05", "--vnnlib", folder, "--quiet",
                          "--runtimes", "reference")
    assert result.returncode == 0, result.stderr
    rows = (folder / "instances.csv").read_text().split()
    assert rows == [f"default.inlined.onnx,prop_0000{i}.vnnlib,60" for i in range(3)]
    assert (folder / "default.onnx").read_bytes() == default_onnx.read_bytes()
    for i in range(3):
        text = (folder / f"prop_0000{i}.vnnlib").read_text()
        assert text.count("(declare-const X_") == 784 and text.count("(declare-const Y_") == 10
        lower, upper, unsafe = parse_vnnlib(text)
        x = pixels(images[i]).ravel().astype(np.float64)
        lo, hi = np.array([lower[k] for k in range(784)]), np.array([upper[k] for k in range(784)])
        assert (lo <= x).all() and (x <= hi).all() and (lo >= 0).all() and (hi <= 1).all()
        assert np.allclose(lo, np.maximum(x - 0.05, 0), atol=1e-15) and np.allclose(hi, np.minimum(x + 0.05, 1), atol=1e-15)
        assert sorted(j for j, _ in unsafe) == [j for j in range(10) if j != labels[i]]
        assert {y for _, y in unsafe} == {labels[i]}


def test_torch_runtimes_run_the_files_graph(default_onnx):
    import torch

    from linfdist.models import load_pretrained
    from linfdist.runtimes import torch_runtimes

    original = load_pretrained(bundled_model_dir())
    runtimes = torch_runtimes(load_graph(default_onnx))
    x = np.random.default_rng(0).random((7, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = original(torch.from_numpy(x)).numpy()
    assert np.array_equal(runtimes["torch-cpu"].logits(x), expected)  # the same float32 ops in the same order
    if runtimes["torch-native"].available:  # p = ∞: the native kernels equal the torch path bit for bit
        assert np.array_equal(runtimes["torch-native"].logits(x), expected)
    if not torch.cuda.is_available():
        assert runtimes["torch-triton"].reason == "no CUDA device"


def test_torch_runtimes_follow_a_graph_edited_after_export(default_onnx, tmp_path):
    """A node appended after the logits changes what every runtime computes, the torch ones included
    (they once rebuilt the model from the file's metadata and reported the unedited net)."""
    import onnx
    from onnx import helper, numpy_helper

    from linfdist.runtimes import torch_runtimes

    proto = onnx.load(str(default_onnx))
    output = proto.graph.output[0]
    last = next(n for n in proto.graph.node if output.name in n.output)
    last.output[0] = "before_scale"
    proto.graph.initializer.append(numpy_helper.from_array(np.float32([-1, 1, 1, 1, 1, 1, 1, 1, 1, 2]), "scale"))
    proto.graph.node.append(helper.make_node("Mul", ["before_scale", "scale"], [output.name], name="appended"))
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    graph = load_graph(edited)
    x = np.random.default_rng(1).random((20, 1, 28, 28)).astype(np.float32)
    ort_logits = ort_runtimes(graph)[0].logits(x)
    original = torch_runtimes(load_graph(default_onnx))["torch-cpu"].logits(x)
    for name, runtime in torch_runtimes(graph).items():
        if runtime.available:
            np.testing.assert_allclose(runtime.logits(x), ort_logits, rtol=1e-5, atol=1e-5, err_msg=name)
            assert not np.allclose(runtime.logits(x), original)


def test_a_graph_step_without_a_torch_translation_makes_the_runtime_unavailable(default_onnx, monkeypatch):
    from linfdist import runtimes
    from linfdist.verify.rules import Neg

    monkeypatch.delitem(runtimes.TRANSLATIONS, Neg)
    rows = runtimes.torch_runtimes(load_graph(default_onnx))
    assert not rows["torch-cpu"].available and "no torch translation of node" in rows["torch-cpu"].reason
    assert "(Neg)" in rows["torch-cpu"].reason


def test_torch_triton_and_ort_cuda_agree_with_the_reference_on_a_gpu(default_onnx):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from linfdist.data import load_dataset
    from linfdist.runtimes import torch_runtimes

    images, labels = load_dataset("mnist")
    graph = load_graph(default_onnx)
    runtimes = [Runtime(REFERENCE, "float64"), torch_runtimes(graph)["torch-triton"],
                *ort_runtimes(graph)]
    report = verify_dataset(graph, images[:2000], labels[:2000], 0.1, "mnist", runtimes, progress=False)
    for row in report.runtimes[1:]:
        if row.available:
            assert row.outside_rounding_bound == 0 and row.differing == [], row.name


@pytest.mark.parametrize("text, value", [("0.3", 0.3), ("8/255", 8 / 255), ("2/255", 2 / 255), ("0", 0.0)])
def test_eps_takes_numbers_and_fractions(text, value):
    from linfdist.verify.cli import eps_value

    assert eps_value(text) == value


@pytest.mark.parametrize("text", ["8/0", "abc", "1/2/3", ""])
def test_eps_refuses_what_is_not_a_number(text):
    import argparse

    from linfdist.verify.cli import eps_value

    with pytest.raises(argparse.ArgumentTypeError):
        eps_value(text)


def _with_claims(source, target, clean, certified, eps):
    import onnx

    proto = onnx.load(str(source))
    keep = [p for p in proto.metadata_props if not p.key.startswith("linfdist.claimed.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in (("clean_accuracy", clean), ("certified_accuracy", certified), ("eps", eps)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"linfdist.claimed.{key}", repr(value)
    onnx.save(proto, str(target))
    return target


def test_claims_that_disagree_exit_with_their_own_status(tmp_path):
    """On the full split a card that lies is an error (status 3) naming the figure and the gap; one that
    tells the truth passes."""
    import torch

    from linfdist.export import to_onnx
    from linfdist.models import LinfDistNet, LinfDistNetConfig
    from linfdist.verify.cli import CLAIMS_DISAGREE

    torch.manual_seed(0)
    net = LinfDistNet(LinfDistNetConfig(depth=3, width=16, mean=[0.1307], std=[0.3081], eps=0.01)).eval()
    plain = to_onnx(net, tmp_path / "plain.onnx")
    report = tmp_path / "r.json"
    assert run_verifier(plain, "--runtimes", "reference", "--quiet", "--json", report).returncode == 0
    derived = json.loads(report.read_text())
    lying = _with_claims(plain, tmp_path / "lying.onnx", derived["clean_accuracy"],
                         derived["certified_accuracy"] + 1.0, 0.01)
    result = run_verifier(lying, "--runtimes", "reference", "--quiet")
    assert result.returncode == CLAIMS_DISAGREE == 3
    assert result.stderr.count("\n") == 1 and "certified accuracy claimed" in result.stderr
    assert "(-1.00 points)" in result.stderr and "clean accuracy" not in result.stderr
    honest = _with_claims(plain, tmp_path / "honest.onnx", derived["clean_accuracy"],
                          derived["certified_accuracy"], 0.01)
    assert run_verifier(honest, "--runtimes", "reference", "--quiet").returncode == 0
