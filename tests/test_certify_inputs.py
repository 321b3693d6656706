"""`linfdist certify`: a user's own images and arrays, certified by the independent verifier."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from linfdist.cli import main
from linfdist.data import load_dataset
from linfdist.export import export_checkpoint
from linfdist.verify.certificates import certify
from linfdist.verify.graph import load_graph
from linfdist.workflows.certify_inputs import RADIUS_STEPS, certify_inputs, load_inputs
from linfdist.zoo import bundled_model_dir

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return load_graph(export_checkpoint(bundled_model_dir(), tmp_path_factory.mktemp("m") / "default.onnx"))


@pytest.fixture(scope="module")
def digits():
    images, labels = load_dataset("mnist", "test")
    return images[:12], labels[:12]


def test_images_and_arrays_give_the_verifiers_certificates(graph, digits, tmp_path):
    images, labels = digits
    paths = []
    for i, image in enumerate(images[:4]):
        Image.fromarray(image[0]).save(tmp_path / f"d{i}.png")
        paths.append(str(tmp_path / f"d{i}.png"))
    np.save(tmp_path / "batch.npy", images[4:].astype(np.float32) / 255)
    inputs = load_inputs(paths + [str(tmp_path / "batch.npy")], SHAPE)
    assert len(inputs) == 12 and inputs[5].source.endswith("batch.npy[1]")
    pixels = images.astype(np.float32) / 255
    assert all(np.array_equal(item.pixels, p) for item, p in zip(inputs, pixels))  # PNG round trip is exact
    eps = 0.1
    results = certify_inputs(graph, inputs, eps)
    direct = certify(graph, pixels, labels, eps)
    assert [r.predicted for r in results] == list(direct.predictions)
    step = 2.0 ** -RADIUS_STEPS
    for r, item in zip(results, inputs):
        label = np.array([r.predicted])
        assert r.certified == bool(certify(graph, item.pixels[None], label, eps).certified[0])
        for radius, kind in ((r.margin_radius, "margin"), (r.ibp_radius, "ibp")):
            if radius > 0:  # the reported radius is itself proved, and one bisection step further is not
                assert getattr(certify(graph, item.pixels[None], label, radius), kind)[0]
                assert not getattr(certify(graph, item.pixels[None], label, radius + 2 * step), kind)[0]
        assert r.certified == (r.radius >= eps) or abs(r.radius - eps) < step
        assert r.class_name == str(r.predicted)


def test_the_command_prints_one_row_per_input_and_writes_json(digits, tmp_path, capsys):
    Image.fromarray(digits[0][0, 0]).save(tmp_path / "seven.png")
    report = tmp_path / "r.json"
    assert main(["certify", str(tmp_path / "seven.png"), "--eps", "0.1", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "seven.png" in out and "7 (7)" in out and "certified at ε = 0.1" in out
    doc = json.loads(report.read_text())
    assert doc["schema"] == "linfdist.certify/1" and doc["inputs"][0]["predicted"] == 7
    assert doc["inputs"][0]["radius"] >= 0.1


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "x.npy", np.zeros(SHAPE, np.uint8)), "integer pixels"),
    (lambda d: np.save(d / "x.npy", np.full(SHAPE, 200.0, np.float32)), "divide by 255"),
    (lambda d: np.save(d / "x.npy", np.zeros((28, 28, 3), np.float32)), "shape (28, 28, 3)"),
    (lambda d: np.save(d / "x.npy", np.full(SHAPE, np.nan, np.float32)), "NaN"),
    (lambda d: Image.new("L", (32, 32)).save(d / "x.png"), "pass --resize"),
    (lambda d: Image.new("RGB", (28, 28)).save(d / "x.png"), "a RGB image, but the model takes 1 channel"),
    (lambda d: Image.new("RGBA", (28, 28)).save(d / "x.png"), "neither grayscale"),
    (lambda d: (d / "x.png").write_bytes(b"not a png"), "not a readable image"),
    (lambda d: (d / "x.txt").write_text("hello"), "not an image or array file"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, make, message):
    make(tmp_path)
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert main(["certify", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_resize_and_missing_files(tmp_path, capsys):
    Image.new("L", (56, 56), 0).save(tmp_path / "big.png")
    assert main(["certify", str(tmp_path / "big.png"), "--resize"]) == 0
    assert main(["certify", str(tmp_path / "nothing.png")]) == 2
    assert "not found" in capsys.readouterr().err


def test_torch_certify_refuses_pixels_outside_the_unit_box():
    from linfdist.certify import certify as torch_certify
    from linfdist.models import load_pretrained

    model = load_pretrained(bundled_model_dir())
    with pytest.raises(ValueError, match=r"divide by 255"):
        torch_certify(model, torch.full((1, 1, 28, 28), 3.0), torch.zeros(1, dtype=torch.long), 0.1)
