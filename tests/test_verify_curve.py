"""Certified-accuracy curves: per-sample radii in one search, the curve against single-ε runs, monotonicity
of the certificates in ε (which the search relies on), the report, and --plot."""

import json

import numpy as np
import onnx
import pytest

from linfdist.cli import main
from linfdist.data import load_dataset
from linfdist.export import export_checkpoint
from linfdist.verify.certificates import certify
from linfdist.verify.compare import pixels
from linfdist.verify.errors import Refused
from linfdist.verify.graph import load_graph
from linfdist.verify.radii import candidates, certified_radii, curve
from linfdist.zoo import bundled_model_dir

from test_verify_fuzz import random_graph

RADII = [0.05, 0.1, 0.2, 0.3, 8 / 255]


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    graph = load_graph(export_checkpoint(bundled_model_dir(), tmp_path_factory.mktemp("m") / "d.onnx"))
    images, labels = load_dataset("mnist", "test")
    return graph, pixels(images[:400]), labels[:400]


def test_the_curve_equals_single_radius_runs(default):
    graph, x, y = default
    radius, correct = certified_radii(graph, x, y, RADII)
    assert np.array_equal(correct, certify(graph, x, y, 0.0).correct)
    for point, eps in zip(curve(radius, RADII), RADII):
        assert point["certified_accuracy"] == pytest.approx(100 * certify(graph, x, y, eps).certified.mean())
    grid = candidates(RADII)
    proved = radius >= 0
    assert certify(graph, x[proved], y[proved], radius[proved]).certified.all()  # every radius is proved
    above = grid[np.minimum(np.searchsorted(grid, radius[proved], side="right"), len(grid) - 1)]
    fails = ~certify(graph, x[proved], y[proved], above).certified | (above == radius[proved])
    assert fails.all()  # and the next candidate is not
    assert not (radius[~correct] >= 0).any()


def test_per_sample_radii_give_the_same_certificates_as_one_radius(default):
    graph, x, y = default
    scalar = certify(graph, x, y, 0.1)
    vector = certify(graph, x, y, np.full(len(x), 0.1))
    assert np.array_equal(scalar.margin, vector.margin) and np.array_equal(scalar.ibp, vector.ibp)
    assert np.array_equal(scalar.runtime_error, vector.runtime_error)
    with pytest.raises(ValueError, match="one value per sample"):
        certify(graph, x, y, np.full(3, 0.1))


@pytest.mark.parametrize("seed", range(40))
def test_certificates_are_monotone_in_the_radius_on_random_graphs(seed, tmp_path):
    """What the radius search assumes: certified at ε ⇒ certified at every smaller ε."""
    model = random_graph(seed)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    try:
        graph = load_graph(path)
    except Refused:
        pytest.skip("a graph the verifier refuses")
    rng = np.random.default_rng(seed)
    x = rng.random((16, graph.sample_shape[0])).astype(np.float32)
    labels = certify(graph, x, np.zeros(len(x), np.int64), 0.0).predictions
    radii = np.array([0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0])
    held = np.array([certify(graph, x, labels, e).certified for e in radii])  # [radius, sample]
    assert not (held[1:] & ~held[:-1]).any(), "certified at a radius but not at a smaller one"


def test_verify_writes_the_curve_radii_and_plot(tmp_path, capsys):
    report, plot = tmp_path / "r.json", tmp_path / "curve.png"
    assert main(["verify", "--eps", "0.1,0.2,8/255", "--limit", "200", "--runtimes", "reference", "--quiet",
                 "--json", str(report), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "certified accuracy by radius" in out and "ε = 0.2:" in out and f"wrote {plot}" in out
    doc = json.loads(report.read_text())
    assert [p["eps"] for p in doc["curve"]] == [0.1, 0.2, 8 / 255] and len(doc["radii"]) == 200
    assert doc["curve"][0]["certified_accuracy"] == doc["certified_accuracy"]  # the table is at the first ε
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["verify", "--limit", "5", "--quiet", "--plot", str(tmp_path / "c.txt")]) == 2


def test_the_torch_free_entry_point_has_no_plot(default, tmp_path):
    import subprocess
    import sys

    path = export_checkpoint(bundled_model_dir(), tmp_path / "m.onnx")
    run = subprocess.run([sys.executable, "-m", "linfdist.verify", str(path), "--eps", "0.1,0.2", "--limit", "20",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "ε = 0.2:" in run.stdout, run.stderr
