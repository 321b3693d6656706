"""Training schedules, augmentation, loss and recipes."""

import math

import pytest
import torch

from linfdist.train import (
    RECIPES,
    Recipe,
    build_model,
    certified_margin_loss,
    eps_at,
    get_recipe,
    lr_at,
    p_at,
    random_crop,
    reproduce_command,
)


def test_p_schedule_warms_anneals_geometrically_then_goes_to_infinity():
    r = Recipe(epochs=20, p_start=8, p_end=1000, p_warm_epochs=2, p_inf_epochs=3, p_update_epochs=1)
    ps = [p_at(r, e) for e in range(20)]
    assert ps[:2] == [8.0, 8.0] and ps[2] == 8.0
    assert ps[16] == 1000.0 and all(math.isinf(p) for p in ps[17:])
    finite = ps[2:17]
    assert all(a < b for a, b in zip(finite, finite[1:]))
    assert all(p == int(p) for p in finite)
    assert p_at(r, 5.3) == p_at(r, 5.9), "p is constant within an epoch"


def test_eps_ramp_and_cosine_lr():
    r = Recipe(eps_train=0.3, eps_ramp_epochs=4, epochs=10, lr=0.02, lr_final=0.0)
    assert eps_at(r, 0) == 0 and eps_at(r, 2) == pytest.approx(0.15) and eps_at(r, 7) == 0.3
    assert lr_at(r, 0) == pytest.approx(0.02) and lr_at(r, 5) == pytest.approx(0.01) and lr_at(r, 10) == pytest.approx(0)


def test_random_crop_shifts_within_the_padding():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 1, g)
    assert y.shape == x.shape and torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))
    rows, cols = y[:, 0].nonzero()[:, 1], y[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}


def test_loss_prefers_certified_margins():
    r = Recipe(hinge_weight=0.75, hinge_theta=0.3)
    labels = torch.tensor([0, 1])
    small = torch.tensor([[1.0, 0.9, 0.0], [0.0, 1.0, 0.95]])
    large = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    scale = torch.tensor(0.0)
    assert certified_margin_loss(large, labels, 0.1, 3.0, r, scale) < certified_margin_loss(small, labels, 0.1, 3.0, r, scale)


def test_recipes_build_their_models():
    for name, recipe in RECIPES.items():
        model = build_model(recipe)
        assert model.config.width == recipe.width and model.config.eps == recipe.eps_test, name
    assert build_model(Recipe(architecture="LinfDistNetMLP", width=8, depth=2)).config.head_hidden == 512
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(Recipe(architecture="VGG"))


def test_overrides_and_reproduce_command():
    r = get_recipe("mnist-smoke").override(["epochs=3", "lr=0.5", "backend=torch"])
    assert (r.epochs, r.lr, r.backend) == (3, 0.5, "torch")
    assert reproduce_command(r) == "linfdist train --recipe mnist-smoke --data-dir DATA --set epochs=3 --set lr=0.5 --set backend=torch"
    with pytest.raises(ValueError, match="unknown recipe field"):
        Recipe.from_dict({"epochz": 1})
