"""The verifier's threads: a batch split between cores gives exactly the certificates of one walk."""

import numpy as np
import pytest
import torch

from linfdist.export import to_onnx
from linfdist.models import LinfDistNet, LinfDistNetConfig
from linfdist.verify import certificates, parallel
from linfdist.verify.certificates import certify
from linfdist.verify.graph import load_graph

FIELDS = ("logits", "reference_error", "runtime_error", "lower", "upper", "labels", "margin", "ibp", "in_range")


@pytest.mark.parametrize("p", [float("inf"), 8.0])
@pytest.mark.parametrize("per_sample_eps", [False, True])
def test_blocks_of_samples_give_the_certificates_of_one_walk(tmp_path, monkeypatch, p, per_sample_eps):
    torch.manual_seed(0)
    net = LinfDistNet(LinfDistNetConfig(input_shape=[1, 6, 6], depth=3, width=32, p=p, mean=[0.4], std=[0.3]))
    net(torch.rand(64, 1, 6, 6))
    graph = load_graph(to_onnx(net.eval(), tmp_path / "net.onnx"))
    rng = np.random.default_rng(1)
    x = rng.random((203, 1, 6, 6)).astype(np.float32)
    labels = rng.integers(0, 10, len(x))
    eps = rng.random(len(x)) * 0.05 if per_sample_eps else 0.02
    runs = {}
    for cores in (1, 3, 8):
        monkeypatch.setattr(parallel, "cores", lambda cores=cores: cores)
        runs[cores] = certify(graph, x, labels, eps)
    assert len(x) > 6 * certificates.MIN_BLOCK  # so 3 and 8 cores really cut the batch (blocks of 68, of 32)
    for cores in (3, 8):
        for field in FIELDS:
            assert np.array_equal(getattr(runs[1], field), getattr(runs[cores], field)), (cores, field)
        assert np.array_equal(np.asarray(runs[1].eps), np.asarray(runs[cores].eps))


def test_work_inside_a_block_stays_on_its_thread():
    seen = parallel.run_blocks(4, 1, lambda i, j: (parallel.nested(), parallel.run_blocks(3, 1, lambda a, b: a)),
                               pool="test")
    assert parallel.nested() is False
    if parallel.cores() > 1:
        assert all(inside for inside, _ in seen)
    assert [inner for _, inner in seen] == [[0, 1, 2]] * 4


def test_merged_shard_reports_pool_counts_lists_and_failures():
    from types import SimpleNamespace

    from linfdist.verify.compare import Report, RuntimeResult, merge_reports

    def part(n, correct, certified, differing, failed=False):
        rows = [RuntimeResult("reference", "ref", "", 100 * correct / n, 100 * certified / n, 0.0, 0, [], 1.0),
                RuntimeResult("ort-cpu", "ort", "failed at sample 7: boom") if failed else
                RuntimeResult("ort-cpu", "ort", "", 100 * correct / n, 100 * certified / n, 1e-6 * n, 1, differing,
                              2.0 * n)]
        return Report("m", "h", "mnist", 0.1, n, 100 * correct / n, 100 * certified / n, 100 * certified / n,
                      100 * certified / n, rows, {}, 3.0 * n, computed="full")

    graph = SimpleNamespace(metadata={})
    merged = merge_reports([part(3, 2, 1, [{"index": 1}]), part(4, 4, 3, [{"index": 5}, {"index": 6}])], graph, False)
    assert merged.n == 7 and merged.clean_accuracy == 100 * 6 / 7 and merged.certified_accuracy == 100 * 4 / 7
    ort = merged.runtimes[1]
    assert [d["index"] for d in ort.differing] == [1, 5, 6] and ort.outside_rounding_bound == 2
    assert ort.max_abs_dlogit == 4e-6 and ort.seconds == 8.0 and merged.seconds == 12.0
    failed = merge_reports([part(3, 2, 1, []), part(4, 4, 3, [], failed=True)], graph, False)
    assert not failed.runtimes[1].available and failed.runtimes[1].reason == "failed at sample 7: boom"
