"""Certificates are sound: no attack and no brute-force search ever breaks one."""

import itertools

import pytest
import torch

from linfdist.certify import certify, interval_margin, logit_bounds, margin
from linfdist.models import LinfDistNet, LinfDistNetConfig, LinfDistNetMLP, LinfDistNetMLPConfig


def tiny_net(seed, **overrides):
    torch.manual_seed(seed)
    cfg = dict(input_shape=[1, 1, 2], depth=3, width=6, num_classes=3, mean=[0.5], std=[0.3])
    cfg.update(overrides)
    net = LinfDistNet(LinfDistNetConfig(**cfg))
    net(torch.rand(64, *net.config.input_shape))  # give the mean shifts a running mean
    return net.eval()


def tiny_mlp(seed):
    torch.manual_seed(seed)
    net = LinfDistNetMLP(LinfDistNetMLPConfig(input_shape=[1, 1, 2], depth=2, width=5, head_hidden=4, num_classes=3))
    net(torch.rand(64, 1, 1, 2))
    return net.eval()


def pgd(net, x, labels, eps, steps=40):
    """Minimise the margin inside the clipped ε-box (sign-gradient steps, random start)."""
    delta = (torch.rand_like(x) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        adv = (x + delta).clamp(0, 1)
        loss = margin(net(adv), labels).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() - 0.25 * eps * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


@pytest.mark.parametrize("seed", range(5))
def test_margin_certificate_survives_pgd_at_the_certified_radius(seed):
    net = tiny_net(seed, input_shape=[1, 4, 4], width=16, num_classes=4)
    x = torch.rand(200, 1, 4, 4)
    labels = net(x).argmax(1)  # every sample correct: radii are all positive
    cert = certify(net, x, labels, eps=0.0)
    eps = cert.radius * 0.999
    adv = pgd(net, x, labels, eps.view(-1, 1, 1, 1))
    assert (net(adv).argmax(1) == labels).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("make", [tiny_net, tiny_mlp])
def test_certified_points_never_flip_on_a_dense_grid(seed, make):
    """Brute force on 2-pixel inputs: scan the whole ε-box of each certified sample."""
    net = make(seed)
    x = torch.rand(40, 1, 1, 2)
    labels = net(x).argmax(1)
    eps = 0.08
    cert = certify(net, x, labels, eps)
    grid = torch.linspace(-eps, eps, 41)
    offsets = torch.tensor(list(itertools.product(grid, grid))).view(-1, 1, 1, 2)
    lo, hi = logit_bounds(net, x, eps)
    checked = 0
    for i in range(len(x)):
        pts = (x[i] + offsets).clamp(0, 1)
        with torch.no_grad():
            logits = net(pts)
        assert (logits >= lo[i] - 1e-5).all() and (logits <= hi[i] + 1e-5).all()
        if cert.certified[i]:
            assert (logits.argmax(1) == labels[i]).all()
            checked += 1
    assert checked > 0, "no sample was certified: the test proves nothing"


def predicted_margins(seed, n):
    """A tiny net, n inputs labelled with its own predictions, and their margins."""
    net = tiny_net(seed)
    x = torch.rand(n, 1, 1, 2)
    labels = net(x).argmax(1)
    with torch.no_grad():
        return net, x, labels, margin(net(x), labels)


def test_margin_certificate_is_margin_over_two_l_eps_less_a_tiny_allowance():
    net, x, labels, m = predicted_margins(0, 400)
    two_l = 2 * net.lipschitz()
    eps = float(m.median()) / two_l
    cert = certify(net, x, labels, eps)
    naive = m > two_l * eps
    assert not (cert.margin_certified & ~naive).any(), "certified beyond the exact-arithmetic margin"
    far = (m - two_l * eps).abs() > 1e-4
    assert torch.equal(cert.margin_certified[far], naive[far])
    assert cert.margin_certified.any() and not cert.margin_certified.all()


def test_near_boundary_case_naive_float32_certifies_but_sound_does_not():
    """ε just below margin / 2L: the naive check passes, the rounding allowance refuses."""
    net, x, labels, m = predicted_margins(3, 50)
    i = int(m.argmax())
    eps = float(m[i]) / (2 * net.lipschitz()) * (1 - 1e-7)
    assert bool(m[i] > 2 * net.lipschitz() * eps), "the naive float32 margin check certifies"
    cert = certify(net, x[i: i + 1], labels[i: i + 1], eps)
    assert not cert.margin_certified.any()  # (IBP, a separate certificate, may still prove it)
    assert float(cert.radius[0]) < eps


def test_wrong_predictions_are_never_certified():
    net = tiny_net(1)
    x = torch.rand(50, 1, 1, 2)
    wrong = (net(x).argmax(1) + 1) % 3
    cert = certify(net, x, wrong, eps=0.0)
    assert not cert.certified.any() and (cert.radius == 0).all()


def test_mlp_radius_is_certified_by_ibp():
    net = tiny_mlp(2)
    x = torch.rand(30, 1, 1, 2)
    labels = net(x).argmax(1)
    cert = certify(net, x, labels, 0.0)
    assert cert.margin_certified is None
    ok = interval_margin(*logit_bounds(net, x, cert.radius), labels) > 0
    assert ok[cert.radius > 0].all()


def test_negative_eps_is_refused():
    with pytest.raises(ValueError):
        certify(tiny_net(0), torch.rand(2, 1, 1, 2), torch.zeros(2, dtype=torch.long), -0.1)
