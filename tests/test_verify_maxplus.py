"""The verifier's compiled float64 max-plus helper against the numpy definition, and its fallback."""

import numpy as np
import pytest

from linfdist.verify import maxplus


@pytest.fixture
def numpy_only(monkeypatch):
    monkeypatch.setenv(maxplus.ENV_NUMPY, "1")
    monkeypatch.setattr(maxplus, "_STATE", {})
    yield
    maxplus._STATE.clear()


def _compiled_or_skip():
    if not maxplus.backend().startswith("compiled"):
        pytest.skip("the compiled helper was not built here (no C compiler at install time)")


@pytest.fixture(params=maxplus.supported_isas() or ["none"])
def isa(request, monkeypatch):
    """Once per instruction set of the helper this CPU runs (forced through the environment)."""
    _compiled_or_skip()
    monkeypatch.setenv(maxplus.ENV_ISA, request.param)
    assert maxplus.backend() == f"compiled {request.param}"
    return request.param


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (3, 5, 7), (7, 9, 17), (17, 784, 10), (64, 33, 129), (250, 512, 512)])
def test_compiled_extremes_equal_the_numpy_definition(n, k, m, isa):
    rng = np.random.default_rng(n * 1000 + k + m)
    a = rng.normal(size=(n, k)) * rng.choice([1e-300, 1e-8, 1.0, 1e30], size=(n, k))
    w = rng.normal(size=(m, k)).astype(np.float32).astype(np.float64)
    a[0, : k // 2] = w[0, : k // 2]  # exact ties and zero differences
    above, below = maxplus.extremes(a, np.ascontiguousarray(w.T))
    diff = a[:, None, :] - w[None]
    assert np.array_equal(above, diff.max(axis=2)) and np.array_equal(below, (w[None] - a[:, None, :]).max(axis=2))


def test_certificates_are_the_same_with_and_without_the_helper(tmp_path, monkeypatch):
    """End to end on exported nets (p = ∞ and finite p): every value, bound and decision identical."""
    _compiled_or_skip()
    import torch

    from linfdist.export import to_onnx
    from linfdist.models import LinfDistNet, LinfDistNetConfig
    from linfdist.verify.certificates import certify
    from linfdist.verify.graph import load_graph

    rng = np.random.default_rng(0)
    for p in (float("inf"), 8.0):
        torch.manual_seed(0)
        net = LinfDistNet(LinfDistNetConfig(input_shape=[1, 5, 5], depth=3, width=24, p=p, mean=[0.4], std=[0.3]))
        net(torch.rand(64, 1, 5, 5))
        path = to_onnx(net.eval(), tmp_path / f"net{p}.onnx")
        x = rng.random((40, 1, 5, 5)).astype(np.float32)
        labels = rng.integers(0, 10, 40)
        runs = []
        for forced in (False, True):
            if forced:
                monkeypatch.setenv(maxplus.ENV_NUMPY, "1")
            else:
                monkeypatch.delenv(maxplus.ENV_NUMPY, raising=False)
            monkeypatch.setattr(maxplus, "_STATE", {})
            assert maxplus.backend().startswith("numpy" if forced else "compiled")
            runs.append(certify(load_graph(path), x, labels, 0.02))
        for field in ("logits", "reference_error", "runtime_error", "lower", "upper", "margin", "ibp", "in_range"):
            assert np.array_equal(getattr(runs[0], field), getattr(runs[1], field)), (p, field)
    maxplus._STATE.clear()


def test_without_the_helper_numpy_computes_it(numpy_only):
    assert maxplus.backend() == "numpy" and maxplus.extremes(np.zeros((2, 3)), np.zeros((3, 4))) is None


def test_an_instruction_set_this_cpu_lacks_is_refused(monkeypatch):
    _compiled_or_skip()
    monkeypatch.setenv(maxplus.ENV_ISA, "avx1024")
    with pytest.raises(ValueError, match="LINFDIST_VERIFY_ISA=avx1024"):
        maxplus.extremes(np.zeros((2, 3)), np.zeros((3, 4)))
