"""The native CPU kernels: bitwise equal to the torch reference for p = ∞, tight for finite p, on every
instruction set this CPU runs, any thread count; clear errors; a clean fallback without the library."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from linfdist.kernels import native, torch_dist

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native kernels unavailable: {native.reason()}")
SHAPES = [(1, 1, 1), (3, 17, 65), (17, 65, 3), (65, 3, 17), (5, 1000, 17), (17, 5, 1000), (33, 129, 257)]


@pytest.fixture(params=native.supported_isas() or ["none"])
def isa(request, monkeypatch):
    """Run a test once per instruction set this CPU supports (forced through the environment)."""
    monkeypatch.setenv(native.ENV_ISA, request.param)
    native._STATE.clear()
    yield request.param
    native._STATE.clear()


@pytest.fixture(params=[1, 3])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def operands(n, m, k, seed=0, layout="contiguous"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=gen)
    w = torch.randn(m, k, generator=gen)
    if layout == "transposed":
        x, w = x.t().contiguous().t(), w.t().contiguous().t()
    elif layout == "sliced":
        x = torch.randn(n, 2 * k, generator=gen)[:, ::2]
    return x.requires_grad_(), w.requires_grad_()


@pytest.mark.parametrize("n,m,k", [*SHAPES, (3, 70, 6000), (9, 130, 2100)])  # the last two read k in blocks
def test_linf_forward_index_and_gradients_equal_the_reference_bitwise(n, m, k, isa, threads):
    assert native.isa_name() == isa
    x, w = operands(n, m, k)
    y, index = native.linf_forward(x.detach(), w.detach(), want_index=True)
    ref_y, ref_index = torch_dist._forward_block(torch_dist.AbsDiff, math.inf, True, (None, None), w.detach(), x.detach())
    assert torch.equal(y, ref_y) and torch.equal(index, ref_index)
    g = torch.randn(n, m)
    grads = torch.autograd.grad(native.native_lp_dist(x, w), (x, w), g)
    ref = torch.autograd.grad(torch_dist.torch_lp_dist(x, w), (x, w), g)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref))


def test_linf_ties_across_blocks_of_k_keep_the_first_arg_max(isa):
    """Blocks of k (large K) resume from the stored maxima: a later block's equal value must not take the index."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randint(-2, 3, (5, 6000), generator=gen).float()
    w = torch.randint(-2, 3, (70, 6000), generator=gen).float()
    y, index = native.linf_forward(x, w, want_index=True)
    ref_y, ref_index = torch_dist._forward_block(torch_dist.AbsDiff, math.inf, True, (None, None), w, x)
    assert torch.equal(y, ref_y) and torch.equal(index, ref_index)
    assert (index < 100).all(), "the maximum 4 first appears early; a later block must not have taken it"


@pytest.mark.parametrize("m,k", [(1, 1), (23, 5), (65, 300), (130, 17)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
def test_panels_are_w_transposed_in_column_blocks(m, k, layout, isa, threads):
    """The packing the forward kernels read: panel p holds W^T[:, p·T:(p+1)·T], zero past row m."""
    w = torch.randn(m, k)
    strided = {"contiguous": w, "transposed": w.t().contiguous().t(),
               "sliced": torch.stack([w, torch.full_like(w, float("nan"))], -1).view(m, 2 * k)[:, ::2]}[layout]
    assert torch.equal(strided, w)
    lib, code = native._load()
    wt, mp = native._panels(strided, code, lib)
    tile = lib.ld_tile_width(code)
    assert mp % tile == 0 and m <= mp < m + tile and wt.shape == (mp // tile, k, tile)
    padded = torch.cat([w, torch.zeros(mp - m, k)])
    assert torch.equal(wt, padded.view(mp // tile, tile, k).transpose(1, 2))


@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_non_contiguous_inputs(layout, isa):
    x, w = operands(9, 30, 40, layout=layout)
    assert torch.equal(native.native_lp_dist(x, w), torch_dist.torch_lp_dist(x, w))


@pytest.mark.parametrize("n,m,k", SHAPES)
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 2.5, 3.0, 7.5, 8.0, 11.0, 16.0, 21.01, 380.73, 1000.0])
def test_finite_p_forward_and_gradients_match_float64(n, m, k, p, isa, threads):
    x, w = operands(n, m, k, seed=1)
    g = torch.randn(n, m)
    y = native.native_lp_dist(x, w, p)
    ref = torch_dist.torch_lp_dist(x.double(), w.double(), p)
    tol = 2e-7 * p + 2e-6
    assert ((y.double() - ref).abs() <= tol * ref.abs().clamp_min(1)).all()
    assert (y >= native.native_lp_dist(x, w)).all(), "‖·‖_p >= ‖·‖_∞ must survive rounding"
    grads = torch.autograd.grad(y, (x, w), g)
    ref_grads = torch.autograd.grad(ref, (x, w), g.double())
    for a, b in zip(grads, ref_grads):
        assert ((a.double() - b).abs() <= tol * b.abs().max().clamp_min(1)).all()


@pytest.mark.parametrize("p", [1.5, 2.5, 4.5, 7.5, 16.5, 21.01, 37.25, 99.9, 380.73, 999.5])
def test_fractional_powers_are_accurate_over_the_whole_range(p, isa):
    """Non-integer p goes through the kernels' own powers: the split power t^n 2^(f E) m^f (chains of
    multiplies, a table, a polynomial) or log2 and exp2. With x = (1, t, 0, ...) and w = 0 the gradient in
    t is the power r^(p-1) itself, r = t (1 / y) as the kernel rounds it in float32: per element, over t
    from 1e-30 to 1, it must match float64 within a bound that grows with the float32 rounding of the
    exponent (p - 1) log2 r (exp2) and with the p - 1 roundings of a chain of multiplies (as integer p's
    do), not otherwise (terms the large-p kernels may skip, below 2^-40 of the gradient, are left out)."""
    gen = torch.Generator().manual_seed(4)
    t = torch.cat([torch.rand(3000, generator=gen) ** 30, 1 - torch.rand(3000, generator=gen) * 0.02,
                   torch.rand(3000, generator=gen)])
    x = torch.zeros(len(t), 32)
    x[:, 0], x[:, 1] = 1.0, t
    x.requires_grad_()
    y = native.native_lp_dist(x, torch.zeros(1, 32), p)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    ratio = (t * (1 / y.detach()[:, 0])).double()
    exact = ratio ** (p - 1)
    kept = exact > 2.0**-39
    error = (grad[:, 1].double() - exact).abs() / exact
    bound = 3e-7 + 1.5e-7 * (p - 1) * ratio.log2().abs().clamp_min(1)
    assert kept.sum() > 3000 and (error[kept] <= bound[kept]).all()
    assert (grad[~kept, 1].abs() <= 2.0**-38).all(), "a ratio too small to matter must give a power as small"


@pytest.mark.parametrize("p", [3.5, 4.5, 6.5, 8.5, 12.3, 21.01])
def test_split_powers_keep_sums_of_tiny_ratios_exact(p, isa):
    """The split power t^n 2^(f E) m^f reads 2^(f E) from a table of the top exponents only: ratios below
    it (here down to 1e-30, beside one of 1) must still add next to nothing, so every norm keeps float32
    accuracy."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(64, 300, generator=gen) ** torch.linspace(1, 60, 64)[:, None]
    x[:, 0] = 1.0
    y = native.native_lp_dist(x, torch.zeros(1, 300), p)
    ref = torch_dist.torch_lp_dist(x.double(), torch.zeros(1, 300, dtype=torch.float64), p)
    assert ((y.double() - ref).abs() / ref).max() < 4e-7

def test_power_constants_are_the_fits_the_script_prints():
    """vpow_general's polynomial coefficients and log2 tables are what kernels/csrc/pow_coefficients.py
    computes (the comments say so; this keeps it true)."""
    root = Path(__file__).resolve().parents[1] / "kernels" / "csrc"
    printed = subprocess.run([sys.executable, str(root / "pow_coefficients.py")], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    source = (root / "linfdist_native.c").read_text() + (root / "body.h").read_text()
    assert printed[0] in source and printed[1] in source
    for line in printed[2:]:
        for number in line.split(": ")[1].split(", "):
            assert f"V_SET1({number})" in source, number


@pytest.mark.parametrize("p", [2.0, 3.0, 8.0, 16.0])
@pytest.mark.parametrize("scale", [1e-9, 1e-3, 1e3, 1e12])
def test_direct_power_sums_only_where_nothing_overflows_or_underflows(p, scale, isa):
    """Integer p <= 16 sums |x - w|^p without rescaling only in tiles whose norms lie in a safe range; half
    the rows here are scaled so far that a plain sum would overflow or underflow, and every row, in every
    tile, must keep float32 accuracy."""
    gen = torch.Generator().manual_seed(3)
    rows = torch.tensor([scale, 1.0] * 6)[:, None]
    x, w = torch.randn(12, 300, generator=gen) * rows, torch.randn(40, 300, generator=gen) * scale
    y = native.native_lp_dist(x, w, p)
    ref = torch_dist.torch_lp_dist(x.double(), w.double(), p)
    assert ((y.double() - ref).abs() / ref).max() < 2e-6
    assert (y >= native.native_lp_dist(x, w)).all()


@pytest.mark.parametrize("p", [16.0, 17.0, 64.0, 381.5, 1000.0])
def test_large_p_skips_only_negligible_terms(p, isa):
    """From p = 17 the kernels leave out vectors of k whose ratios to the norm are all tiny (terms
    below 2^-40 of the largest): with K = 1000 most are; the results keep float32 accuracy."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(33, 1000, generator=gen).requires_grad_()
    w = torch.randn(129, 1000, generator=gen).requires_grad_()
    g = torch.randn(33, 129, generator=gen)
    y = native.native_lp_dist(x, w, p)
    ref = torch_dist.torch_lp_dist(x.double(), w.double(), p)
    assert ((y.double() - ref).abs() / ref).max() < 5e-7
    for a, b in zip(torch.autograd.grad(y, (x, w), g), torch.autograd.grad(ref, (x, w), g.double())):
        assert (a.double() - b).abs().max() <= (1e-7 * p + 2e-6) * b.abs().max()


@pytest.mark.parametrize("n,m,k", SHAPES)
def test_interval_bounds_equal_the_reference_with_gradients(n, m, k, isa, threads):
    x, w = operands(n, m, k, seed=2)
    lower = (x.detach() - 0.3).requires_grad_()
    upper = (x.detach() + 0.2).requires_grad_()
    lo, hi = native.native_interval_lp_dist(lower, upper, w)
    ref_lo, ref_hi = torch_dist.torch_interval_lp_dist(lower, upper, w)
    assert torch.equal(lo, ref_lo) and torch.equal(hi, ref_hi)
    g1, g2 = torch.randn(n, m), torch.randn(n, m)
    grads = torch.autograd.grad((lo, hi), (lower, upper, w), (g1, g2))
    ref = torch.autograd.grad((ref_lo, ref_hi), (lower, upper, w), (g1, g2))
    assert all(torch.equal(a, b) for a, b in zip(grads, ref))


def test_auto_dispatch_uses_native_on_float32_cpu_and_nan_propagates():
    from linfdist.functional import _resolve, lp_dist

    x, w = torch.rand(4, 6), torch.rand(5, 6)
    assert _resolve("auto", x) == "native" and _resolve("auto", x.double()) == "torch"
    x[1, 2] = float("nan")
    y = lp_dist(x, w)
    assert torch.isnan(y[1]).all() and not torch.isnan(y[[0, 2, 3]]).any()


@pytest.mark.parametrize("call,message", [
    (lambda: native.native_lp_dist(torch.rand(2, 3).double(), torch.rand(4, 3).double()), "float32 CPU"),
    (lambda: native.native_lp_dist(torch.rand(2, 3), torch.rand(4, 5)), "must be 2-D"),
    (lambda: native.native_lp_dist(torch.rand(2, 3), torch.rand(4, 3), p=0.5), "p must be >= 1"),
    (lambda: native.native_interval_lp_dist(torch.ones(2, 3), torch.zeros(2, 3), torch.rand(4, 3)), "exceeds"),
])
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_without_the_library_everything_falls_back_to_torch(tmp_path):
    code = ("import torch; from linfdist.kernels import native; from linfdist.functional import _resolve, lp_dist; "
            "print(native.available(), _resolve('auto', torch.rand(2, 2)), lp_dist(torch.rand(3, 4), torch.rand(5, 4)).shape);"
            "print(native.reason())")
    env = {"LINFDIST_NATIVE_LIB": str(tmp_path / "missing.so"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    first, reason = result.stdout.strip().splitlines()
    assert first == "False torch torch.Size([3, 5])" and "unusable" in reason


def test_forcing_an_unknown_instruction_set_is_refused(monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, "sse9")
    native._STATE.clear()
    try:
        with pytest.raises(ValueError, match="sse9"):
            native.available()
    finally:
        native._STATE.clear()


@pytest.mark.parametrize("wanted", ["x", "w"])
@pytest.mark.parametrize("p", [math.inf, 8.0, 2.5])
def test_one_operand_gradients(wanted, p, isa, threads):
    """Frozen weights (or inputs) take the one-operand backward paths."""
    x, w = operands(13, 37, 70, seed=3)
    x.requires_grad_(wanted == "x")
    w.requires_grad_(wanted == "w")
    target = x if wanted == "x" else w
    g = torch.randn(13, 37)
    (grad,) = torch.autograd.grad(native.native_lp_dist(x, w, p), target, g)
    (ref,) = torch.autograd.grad(torch_dist.torch_lp_dist(x.double(), w.double(), p), target, g.double())
    assert ((grad.double() - ref).abs() <= (2e-7 * min(p, 1000) + 2e-6) * ref.abs().max()).all()
