"""The Triton kernels against the pure-torch reference.

Without a GPU they run on CPU tensors through Triton's interpreter (conftest sets
TRITON_INTERPRET=1), so CI checks the kernel code itself; with CUDA the same tests
run compiled on the GPU, and the GPU-only tests at the end run too.
"""

import math

import pytest
import torch

from linfdist.functional import interval_lp_dist, lp_dist
from linfdist.kernels import torch_dist, triton_available

pytestmark = pytest.mark.skipif(not triton_available(), reason="Triton is not installed")

# (N, M, K): single elements, less than a tile, more than one tile in every direction, and
# whole tiles (the interpreter's tile is 32: the unclamped EVEN path).
SHAPES = [(1, 1, 1), (5, 7, 3), (37, 53, 67), (64, 32, 9)]
FINITE_P = [1.0, 2.0, 3.0, 2.5, 8.0, 16.0, 17.0, 55.0, 999.5, 1000.0]  # 17 and up: the exp2/log2 path


@pytest.fixture
def device():
    """Where the kernels run: CUDA when present, else CPU through the interpreter."""
    if torch.cuda.is_available():
        return "cuda"
    from linfdist.kernels.triton_common import interpreting

    if not interpreting():
        pytest.skip("no CUDA and TRITON_INTERPRET is not set")
    return "cpu"


@pytest.fixture
def kernels():
    from linfdist import kernels as module

    return module


def strided(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` in a contiguous, transposed or sliced (every other column) layout."""
    if layout == "transposed":
        return t.t().contiguous().t()
    if layout == "sliced":
        wide = torch.zeros(t.shape[0], 2 * t.shape[1], dtype=t.dtype, device=t.device)
        wide[:, ::2] = t
        return wide[:, ::2]
    return t.contiguous()


def grads(fn, inputs, seed_like):
    """(outputs, gradients of inputs) for a random cotangent on each output."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    cotangents = [torch.randn(o.shape, generator=seed_like).to(o.device, o.dtype) for o in outs]
    total = sum((o * c).sum() for o, c in zip(outs, cotangents))
    return outs, torch.autograd.grad(total, inputs)


def gen():
    """Cotangents come from one CPU stream whatever the device, so a CPU reference sees the same ones."""
    return torch.Generator().manual_seed(1)


def on_cpu(*tensors):
    """CPU copies: the deterministic kernels match torch's CPU scatter order (CUDA's scatter_add_ uses
    atomics, so a reference computed on the GPU has no fixed order to match)."""
    return tuple(t.detach().cpu() for t in tensors)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("n,m,k", SHAPES)
def test_linf_forward_and_index_equal_reference(kernels, device, n, m, k, layout):
    from linfdist.kernels.triton_linf import linf_forward

    x, w = torch.randn(n, k, device=device), torch.randn(m, k, device=device)
    xs, ws = strided(x, layout), strided(w, "sliced" if layout == "contiguous" else layout)
    out, index = linf_forward(xs, ws, with_index=True)
    values, reference_index = (x[:, None] - w[None]).abs().max(-1)
    assert torch.equal(out, values)
    assert torch.equal(index.long(), reference_index)
    assert torch.equal(kernels.lp_dist(xs, ws), values)


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("n,m,k", SHAPES)
def test_linf_gradients_equal_reference(kernels, device, n, m, k, deterministic):
    x, w = torch.randn(n, k, device=device), strided(torch.randn(m, k, device=device), "transposed")
    out, got = grads(lambda a, b: kernels.lp_dist(a, b, math.inf, deterministic), (x, w), gen())
    ref_out, want = grads(lambda a, b: torch_dist.torch_lp_dist(a, b, math.inf), on_cpu(x, w), gen())
    assert torch.equal(out[0].cpu(), ref_out[0])
    for g, r in zip(on_cpu(*got), want):
        if deterministic:  # same arithmetic in the same order as the reference
            assert torch.equal(g, r)
        else:  # atomics: only the summation order may differ
            torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)


def test_deterministic_backward_is_bitwise_reproducible(kernels, device):
    x, w = torch.randn(37, 67, device=device), torch.randn(53, 67, device=device)
    first = grads(lambda a, b: kernels.lp_dist(a, b, math.inf, True), (x, w), gen())[1]
    second = grads(lambda a, b: kernels.lp_dist(a, b, math.inf, True), (x, w), gen())[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_deterministic_default_follows_torch_flag(device):
    from linfdist.kernels.triton_scatter import use_deterministic

    assert use_deterministic(None) is False
    torch.use_deterministic_algorithms(True)
    try:
        assert use_deterministic(None) is True
        assert use_deterministic(False) is False
    finally:
        torch.use_deterministic_algorithms(False)


def naive_lp(x, w, p):
    """Direct float64 reference."""
    d = (x.double()[:, None] - w.double()[None]).abs()
    peak = d.amax(-1, keepdim=True).clamp_min(1e-300)
    return (peak * (d / peak).pow(p).sum(-1, keepdim=True).pow(1 / p)).squeeze(-1)


@pytest.mark.parametrize("p", FINITE_P)
@pytest.mark.parametrize("n,m,k", SHAPES[1:])
def test_finite_p_matches_float64_reference(kernels, device, n, m, k, p):
    """Values and gradients within float32 conditioning: (|d|/Y)^(p−1) amplifies a ratio's rounding p-fold."""
    x, w = torch.randn(n, k, device=device), strided(torch.randn(m, k, device=device), "sliced")
    out, got = grads(lambda a, b: kernels.lp_dist(a, b, p), (x, w), gen())
    ref_out, want = grads(lambda a, b: naive_lp(a, b, p), (x, w), gen())
    torch.testing.assert_close(out[0].double(), ref_out[0], rtol=1e-6, atol=1e-6)
    tolerance = 2e-7 * p + 1e-6
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=tolerance, atol=tolerance * r.abs().max().item())


def test_an_annealing_schedule_compiles_a_bounded_set_of_power_kernels():
    """Each (E_INT, E_BITS) is a compiled kernel (and an autotune): integer p up to 16 get their own
    chain, every other p, integer or not, shares the exp2/log2 one, so p annealed through every
    integer from 1 to 1024 (and p − 1 in the backward) compiles at most 18 variants per kernel."""
    from linfdist.kernels.triton_common import UNROLLED_EXPONENT_MAX, integer_exponent

    plans = {integer_exponent(float(p)) for p in range(1025)} | {integer_exponent(p + 0.5) for p in range(1025)}
    assert len(plans) == UNROLLED_EXPONENT_MAX + 2
    assert integer_exponent(17.0) == integer_exponent(999.5) == (-1, 0)
    assert integer_exponent(16.0) == (16, 5) and integer_exponent(3.0) == (3, 2)


def test_finite_p_is_stable_at_large_p_and_scale(kernels, device):
    x, w = 100 * torch.randn(8, 50, device=device), 100 * torch.randn(6, 50, device=device)
    y = kernels.lp_dist(x, w, 1000.0)
    linf = kernels.lp_dist(x, w, math.inf)
    assert torch.isfinite(y).all()
    assert (y >= linf).all() and (y <= linf * 50 ** (1 / 1000) * (1 + 1e-6)).all()


def test_zero_distance_has_zero_value_and_finite_gradient(kernels, device):
    x = torch.ones(3, 5, device=device, requires_grad=True)
    w = torch.ones(2, 5, device=device, requires_grad=True)
    for p in (1.0, 2.5, 8.0, math.inf):
        y = kernels.lp_dist(x, w, p)
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        assert torch.equal(y, torch.zeros_like(y))
        assert torch.equal(gx, torch.zeros_like(gx)) and torch.equal(gw, torch.zeros_like(gw))


@pytest.mark.parametrize("p", [math.inf, 2.5, 4.0])
def test_gradcheck_in_float64(kernels, device, p):
    x = torch.randn(4, 6, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: kernels.lp_dist(a, b, p), (x, w))


def random_box(n, k, device):
    center, radius = torch.randn(n, k, device=device), 0.5 * torch.rand(n, k, device=device)
    return center - radius, center + radius


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("n,m,k", SHAPES)
def test_interval_equals_reference(kernels, device, n, m, k, deterministic):
    lower, upper = random_box(n, k, device)
    w = torch.randn(m, k, device=device)
    got_out, got = grads(lambda l, u, v: kernels.interval_lp_dist(l, u, v, deterministic=deterministic),
                         (lower, strided(upper, "sliced"), w), gen())
    ref_out, want = grads(lambda l, u, v: torch_dist.torch_interval_lp_dist(l, u, v), on_cpu(lower, upper, w), gen())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got_out, ref_out))
    for g, r in zip(on_cpu(*got), want):
        if deterministic:
            assert torch.equal(g, r)
        else:
            torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)


def test_interval_contains_sampled_points_and_is_tight(kernels, device):
    lower, upper = random_box(9, 40, device)
    w = torch.randn(11, 40, device=device)
    lo, hi = kernels.interval_lp_dist(lower, upper, w)
    for _ in range(50):
        x = lower + (upper - lower) * torch.rand_like(lower)
        y = kernels.lp_dist(x, w)
        assert (lo <= y).all() and (y <= hi).all()
    corners = kernels.lp_dist(torch.where(w[0] > (lower + upper) / 2, lower, upper), w[:1])
    assert torch.equal(corners, hi[:, :1])  # the farthest corner attains the upper bound


def test_interval_gradcheck_in_float64(kernels, device):
    lower = torch.randn(4, 6, dtype=torch.float64, device=device)
    upper = lower + torch.rand(4, 6, dtype=torch.float64, device=device)
    w = torch.randn(3, 6, dtype=torch.float64, device=device)
    args = [t.requires_grad_() for t in (lower, upper, w)]
    assert torch.autograd.gradcheck(lambda l, u, v: kernels.interval_lp_dist(l, u, v), args)


def test_one_bound_used_backpropagates(kernels, device):
    lower, upper = random_box(5, 8, device)
    w = torch.randn(4, 8, device=device, requires_grad=True)
    lo, _ = kernels.interval_lp_dist(lower, upper, w)
    (grad,) = torch.autograd.grad(lo.sum(), w)
    lo_ref, _ = torch_dist.torch_interval_lp_dist(lower, upper, w)
    assert torch.equal(grad, torch.autograd.grad(lo_ref.sum(), w)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(kernels, device, dtype):
    x = torch.randn(5, 9, device=device).to(dtype).requires_grad_()
    w = torch.randn(4, 9, device=device).to(dtype).requires_grad_()
    y = kernels.lp_dist(x, w)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch_dist.torch_lp_dist(x.float(), w.float()))
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert gx.dtype == dtype and gw.dtype == dtype


@pytest.mark.parametrize("p", [math.inf, 3.0])
def test_nan_inputs_give_nan_outputs(kernels, device, p):
    x, w = torch.randn(4, 6, device=device), torch.randn(3, 6, device=device)
    x[1, 2] = math.nan
    w[2, 0] = math.nan
    y = kernels.lp_dist(x, w, p)
    assert torch.isnan(y[1]).all() and torch.isnan(y[:, 2]).all()
    assert torch.isfinite(y[[0, 2, 3]][:, [0, 1]]).all()
    lower = x.clone()
    lo, hi = kernels.interval_lp_dist(lower, lower.nan_to_num() + 1, w.nan_to_num())
    assert torch.isnan(lo[1]).all() and torch.isnan(hi[1]).all()


def test_bad_operands_are_refused(kernels, device, monkeypatch):
    x, w = torch.randn(4, 6, device=device), torch.randn(3, 6, device=device)
    with pytest.raises(ValueError, match="must be 2-D"):
        kernels.lp_dist(x, w[:, :5])
    with pytest.raises(ValueError, match="share dtype"):
        kernels.lp_dist(x.double(), w)
    with pytest.raises(TypeError, match="float"):
        kernels.lp_dist(x.int(), w.int())
    with pytest.raises(ValueError, match="p must be"):
        kernels.lp_dist(x, w, 0.5)
    with pytest.raises(ValueError, match="lower bound exceeds"):
        kernels.interval_lp_dist(x + 1, x, w)
    with pytest.raises(NotImplementedError, match="p = inf only"):
        kernels.interval_lp_dist(x, x + 1, w, 2.0)
    from linfdist.kernels import triton_common

    monkeypatch.setattr(triton_common.triton.knobs.runtime, "interpret", False)
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        kernels.lp_dist(x.cpu(), w.cpu())


def test_functional_dispatch(device, monkeypatch):
    """backend="triton" runs the kernels; "auto" picks them on CUDA only."""
    from linfdist import kernels

    calls = []
    real = kernels.triton_ops.lp_dist
    monkeypatch.setattr(kernels.triton_ops, "lp_dist", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, w = torch.randn(6, 5, device=device), torch.randn(4, 5, device=device)
    assert torch.equal(lp_dist(x, w, backend="triton"), torch_dist.torch_lp_dist(x, w))
    assert calls == [1]
    lp_dist(x, w, backend="auto")
    assert len(calls) == (2 if device == "cuda" else 1)
    lo, hi = interval_lp_dist(x, x + 1, w, backend="triton")
    assert torch.equal(hi, torch_dist.torch_interval_lp_dist(x, x + 1, w)[1])
    interval_lp_dist(x, x + 1, w, 2.0, backend="auto")  # finite p: the torch path, on any device


def test_model_certificates_agree_across_backends(device):
    """A whole net through the Triton backend certifies exactly what the torch backend does."""
    from linfdist.certify import certify
    from linfdist.models import LinfDistNet, LinfDistNetConfig

    model = LinfDistNet(LinfDistNetConfig(input_shape=[1, 6, 6], num_classes=10, depth=3, width=40)).to(device).eval()
    x = torch.rand(33, 1, 6, 6, device=device)
    labels = torch.randint(0, 10, (33,), device=device)
    results = []
    for backend in ("torch", "triton"):
        model.set_backend(backend)
        results.append(certify(model, x, labels, eps=0.02))
    a, b = results
    assert torch.equal(a.predictions, b.predictions) and torch.equal(a.certified, b.certified)
    assert torch.equal(a.radius, b.radius)


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda_only
@pytest.mark.parametrize("n,m,k", [(512, 5120, 784), (512, 5120, 5120)])
def test_paper_shapes_on_gpu(n, m, k):
    from linfdist import kernels

    x, w = torch.rand(n, k, device="cuda"), torch.randn(m, k, device="cuda")
    out, got = grads(lambda a, b: kernels.lp_dist(a, b), (x, w), gen())
    ref_out, want = grads(lambda a, b: torch_dist.torch_lp_dist(a, b), (x.double(), w.double()), gen())
    assert torch.equal(out[0].double(), ref_out[0])
    # Each gradient entry sums up to 5120 float32 terms in the atomics' order; against the float64
    # reference that rounding reaches ~2e-5 (H200, 2026-11-26). A misrouted or lost term is O(1).
    for g, r in zip(got, want):
        torch.testing.assert_close(g.double(), r, rtol=1e-5, atol=1e-4)
    y8 = kernels.lp_dist(x, w, 8.0)
    torch.testing.assert_close(y8, torch_dist.torch_lp_dist(x, w, 8.0), rtol=1e-5, atol=1e-5)


def test_no_grad_forward_skips_the_arg_max(kernels, device, monkeypatch):
    """Inference takes the value-only loop (about half the instructions of the arg-max one)."""
    from linfdist.kernels import triton_linf

    seen = []
    real = triton_linf.linf_forward
    monkeypatch.setattr(triton_linf, "linf_forward", lambda x, w, index: seen.append(index) or real(x, w, index))
    x = torch.randn(3, 4, device=device, requires_grad=True)
    w = torch.randn(2, 4, device=device, requires_grad=True)
    with torch.no_grad():
        kernels.lp_dist(x, w)
    kernels.lp_dist(x, w)
    kernels.lp_dist(x.detach(), w.detach())
    assert seen == [False, True, False]
