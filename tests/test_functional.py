"""lp_dist / interval_lp_dist against naive references, gradients, memory bounds, bad input."""

import math

import pytest
import torch

from linfdist.functional import interval_lp_dist, lp_dist
from linfdist.kernels import torch_dist

P_VALUES = [1.0, 2.0, 3.5, 8.0, 100.0, math.inf]
SHAPES = [(1, 1, 1), (5, 3, 7), (17, 33, 9), (64, 130, 31)]


def naive_lp_dist(x, w, p):
    """Direct N×M×K reference in float64."""
    d = (x.double()[:, None] - w.double()[None]).abs()
    return d.amax(-1) if math.isinf(p) else d.pow(p).sum(-1).pow(1 / p)


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_linf_forward_is_exact(n, k, m):
    x, w = torch.randn(n, k), torch.randn(m, k)
    reference = (x[:, None] - w[None]).abs().amax(-1)
    assert torch.equal(lp_dist(x, w, math.inf), reference)


@pytest.mark.parametrize("p", P_VALUES[:-1])
@pytest.mark.parametrize("n,k,m", SHAPES)
def test_finite_p_forward_matches_reference(n, k, m, p):
    x, w = torch.randn(n, k), torch.randn(m, k)
    torch.testing.assert_close(lp_dist(x, w, p).double(), naive_lp_dist(x, w, p), rtol=2e-6, atol=1e-6)


def test_large_p_is_stable_and_approaches_linf():
    """p = 1000 on values ~100 overflows a naive power; the normalised one does not."""
    x, w = 100 * torch.randn(8, 50), 100 * torch.randn(6, 50)
    y = lp_dist(x, w, 1000.0)
    linf = lp_dist(x, w, math.inf)
    assert torch.isfinite(y).all()
    assert (y >= linf).all() and (y <= linf * 50 ** (1 / 1000) * (1 + 1e-6)).all()


@pytest.mark.parametrize("p", P_VALUES)
def test_gradcheck_lp_dist(p):
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: lp_dist(a, b, p), (x, w))


@pytest.mark.parametrize("p", [1.0, 2.0, 8.0, math.inf])
def test_gradcheck_interval(p):
    lower = torch.randn(4, 6, dtype=torch.float64)
    upper = (lower + torch.rand(4, 6, dtype=torch.float64)).requires_grad_()
    lower.requires_grad_()
    w = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda l, u, v: interval_lp_dist(l, u, v, p), (lower, upper, w))


@pytest.mark.parametrize("p", P_VALUES)
def test_interval_contains_every_sampled_point(p):
    lower = torch.randn(7, 12)
    upper = lower + torch.rand(7, 12)
    w = torch.randn(9, 12)
    lo, hi = interval_lp_dist(lower, upper, w, p)
    slack = 1e-5 * (1 + hi.abs())
    for _ in range(50):
        x = lower + torch.rand_like(lower) * (upper - lower)
        y = lp_dist(x, w, p)
        assert (y >= lo - slack).all() and (y <= hi + slack).all()
    for corner in (lower, upper):
        y = lp_dist(corner, w, p)
        assert (y >= lo - slack).all() and (y <= hi + slack).all()


def test_interval_of_a_point_is_the_distance():
    x, w = torch.randn(5, 8), torch.randn(4, 8)
    lo, hi = interval_lp_dist(x, x, w, math.inf)
    assert torch.equal(lo, lp_dist(x, w)) and torch.equal(hi, lp_dist(x, w))


def test_linf_lower_bound_is_tight_at_the_nearest_point():
    """For p = ∞ the lower bound is attained: clip w into the box."""
    lower = torch.randn(3, 10)
    upper = lower + torch.rand(3, 10)
    w = torch.randn(5, 10)
    lo, _ = interval_lp_dist(lower, upper, w)
    for m in range(5):
        nearest = torch.minimum(torch.maximum(w[m].expand_as(lower), lower), upper)
        assert torch.allclose(lp_dist(nearest, w[m: m + 1])[:, 0], lo[:, m])


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_chunked_equals_unchunked(monkeypatch, p):
    """Tiny blocks (many chunks, partial ones) give the same values and gradients."""
    x = torch.randn(13, 11, requires_grad=True)
    w = torch.randn(7, 11, requires_grad=True)
    y = lp_dist(x, w, p)
    gx, gw = torch.autograd.grad(y.square().sum(), (x, w))
    monkeypatch.setattr(torch_dist, "CHUNK_ELEMENTS", 30)
    y2 = lp_dist(x, w, p)
    gx2, gw2 = torch.autograd.grad(y2.square().sum(), (x, w))
    torch.testing.assert_close(y2, y, rtol=1e-6, atol=0)
    torch.testing.assert_close(gx2, gx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw2, gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,m,k", [(512, 5120, 5120), (1, 1, 10**7), (10**6, 3, 2)])
def test_blocks_cover_everything_within_the_memory_bound(n, m, k):
    """The paper's 512×5120×5120 layer never holds more than CHUNK_ELEMENTS of N×M×K."""
    covered = 0
    for n0, n1, m0, m1 in torch_dist._blocks(n, m, k):
        assert (n1 - n0) * (m1 - m0) * k <= max(torch_dist.CHUNK_ELEMENTS, k)
        covered += (n1 - n0) * (m1 - m0)
    assert covered == n * m


def test_linf_backward_routes_through_the_argmax():
    x = torch.tensor([[0.0, 3.0, -1.0]], requires_grad=True)
    w = torch.tensor([[1.0, 1.0, 1.0]], requires_grad=True)
    lp_dist(x, w).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0]]
    assert w.grad.tolist() == [[0.0, -1.0, 0.0]]


@pytest.mark.parametrize(
    "x,w,p,error",
    [
        (torch.randn(2, 3), torch.randn(4, 3), 0.5, ValueError),
        (torch.randn(2, 3), torch.randn(4, 3), float("nan"), ValueError),
        (torch.randn(2, 3), torch.randn(4, 5), 2.0, ValueError),
        (torch.randn(2, 3, 1), torch.randn(4, 3), 2.0, ValueError),
        (torch.randn(2, 3), torch.randn(4, 3).double(), 2.0, ValueError),
        (torch.ones(2, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), 2.0, TypeError),
    ],
)
def test_bad_input_is_refused(x, w, p, error):
    with pytest.raises(error):
        lp_dist(x, w, p)


def test_interval_refuses_inverted_box_and_unknown_backend():
    with pytest.raises(ValueError, match="exceeds"):
        interval_lp_dist(torch.ones(1, 2), torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="backend"):
        lp_dist(torch.ones(1, 2), torch.zeros(3, 2), backend="cuda-magic")


@pytest.mark.parametrize("p", [3.0, math.inf])
def test_non_contiguous_inputs(p):
    x = torch.randn(9, 14)[:, ::2]
    w = torch.randn(7, 5).t()
    assert not x.is_contiguous() and not w.is_contiguous()
    exact = math.isinf(p)  # a finite-p sum may be reduced in another order
    torch.testing.assert_close(lp_dist(x, w, p), lp_dist(x.contiguous(), w.contiguous(), p),
                               rtol=0 if exact else 1e-6, atol=0)


@pytest.mark.parametrize("p", [8.0, 13.5, math.inf])
def test_torch_compile_backend_matches_eager(p):
    """The fused CPU path (used by the default recipe) computes the same values and gradients."""
    x = torch.randn(24, 40, requires_grad=True)
    w = torch.randn(16, 40, requires_grad=True)
    grads = []
    for backend in ("torch", "torch-compile"):
        y = lp_dist(x, w, p, backend=backend)
        grads.append((y, *torch.autograd.grad(y.square().sum(), (x, w))))
    for eager, fused in zip(*grads):
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
