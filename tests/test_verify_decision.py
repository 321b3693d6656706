"""Decision-only verification: the same certified samples as the full walk, at less cost, and the report says
what was computed."""

import json

import numpy as np
import onnx
import pytest

from linfdist.cli import main
from linfdist.data import load_dataset
from linfdist.export import export_checkpoint
from linfdist.verify.certificates import certify, decide
from linfdist.verify.compare import DECISION, FULL, pixels
from linfdist.verify.errors import Refused
from linfdist.verify.graph import load_graph
from linfdist.zoo import bundled_model_dir

from test_verify_fuzz import random_graph


@pytest.mark.parametrize("name", ["mnist-5x512-eps0.1", "mnist-5x512-eps0.3"])
def test_decisions_equal_the_full_walks_sample_by_sample(name, tmp_path):
    graph = load_graph(export_checkpoint(bundled_model_dir(name), tmp_path / "m.onnx"))
    images, labels = load_dataset("mnist", "test")
    x, y = pixels(images[:1000]), labels[:1000]
    for eps in (0.0, 0.1, 0.3, 0.45):
        full, quick = certify(graph, x, y, eps), decide(graph, x, y, eps)
        assert np.array_equal(full.certified, quick.certified), eps
        assert np.array_equal(full.correct, quick.correct)
        lipschitz_only = certify(graph, x, y, eps, interval=False)
        assert not (lipschitz_only.certified & ~full.certified).any()  # the quick walk never claims more


@pytest.mark.parametrize("seed", range(30))
def test_decisions_equal_the_full_walks_on_random_graphs(seed, tmp_path):
    onnx.save(random_graph(seed), str(tmp_path / "g.onnx"))
    try:
        graph = load_graph(tmp_path / "g.onnx")
    except Refused:
        pytest.skip("a graph the verifier refuses")
    rng = np.random.default_rng(seed)
    x = rng.random((24, graph.sample_shape[0])).astype(np.float32)
    labels = certify(graph, x, np.zeros(len(x), np.int64), 0.0).predictions
    for eps in (0.0, 1e-3, 0.05, 0.3):
        assert np.array_equal(certify(graph, x, labels, eps).certified, decide(graph, x, labels, eps).certified)


def test_the_report_says_what_was_computed(tmp_path, capsys):
    decision, full = tmp_path / "d.json", tmp_path / "f.json"
    assert main(["verify", "--decision-only", "--limit", "500", "--quiet", "--json", str(decision)]) == 0
    assert "decision only: no margin/IBP breakdown" in capsys.readouterr().out
    assert main(["verify", "--runtimes", "reference", "--limit", "500", "--quiet", "--json", str(full)]) == 0
    d, f = json.loads(decision.read_text()), json.loads(full.read_text())
    assert d["computed"] == DECISION and f["computed"] == FULL
    assert d["certified_accuracy"] == f["certified_accuracy"] and d["clean_accuracy"] == f["clean_accuracy"]
    assert d["margin_accuracy"] is None and f["margin_accuracy"] is not None
    assert [r["name"] for r in d["runtimes"]] == ["reference"]
    assert main(["verify", "--decision-only", "--runtimes", "ort-cpu", "--limit", "5"]) == 2
    assert "runs the reference alone" in capsys.readouterr().err
