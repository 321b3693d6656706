"""Layers and models: identity init, mean shift, Lipschitz property, IBP containment, Hub round-trip."""

import json
import math

import pytest
import torch

from linfdist.models import (
    LinfDistNet,
    LinfDistNetConfig,
    LinfDistNetMLP,
    LinfDistNetMLPConfig,
    load_pretrained,
)
from linfdist.nn import LpDistLinear, MeanShift


def small_net(**overrides):
    cfg = dict(input_shape=[1, 6, 6], depth=3, width=24, mean=[0.5], std=[0.25], eps=0.1)
    cfg.update(overrides)
    return LinfDistNet(LinfDistNetConfig(**cfg))


def small_mlp(**overrides):
    cfg = dict(input_shape=[3, 4, 4], depth=2, width=16, head_hidden=8, mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.25])
    cfg.update(overrides)
    return LinfDistNetMLP(LinfDistNetMLPConfig(**cfg))


def test_identity_init_is_identity_after_mean_shift():
    layer, shift = LpDistLinear(32, 32, identity_value=10.0), MeanShift(32)
    x = torch.rand(64, 32) * 2 - 1
    y = shift(layer(x))
    torch.testing.assert_close(y, x - x.mean(0), rtol=0, atol=1e-5)


def test_mean_shift_tracks_running_mean_and_uses_it_at_inference():
    shift = MeanShift(3, momentum=0.5)
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    torch.testing.assert_close(shift(x), x - x.mean(0))
    torch.testing.assert_close(shift.running_mean, x.mean(0) * 0.5)
    shift.eval()
    torch.testing.assert_close(shift(x), x - x.mean(0) * 0.5)


@pytest.mark.parametrize("p", [math.inf, 4.0])
def test_layer_is_lipschitz_with_its_constant(p):
    layer = LpDistLinear(20, 15, p=p, bias=True)
    with torch.no_grad():
        x = torch.randn(200, 20)
        x2 = x + (torch.rand(200, 20) - 0.5) * torch.rand(200, 1)
        lhs = (layer(x) - layer(x2)).abs().amax(1)
        rhs = (x - x2).abs().amax(1) * layer.lipschitz()
    assert (lhs <= rhs * (1 + 1e-5) + 1e-6).all()


def test_net_logits_are_lipschitz_in_pixel_space():
    net = small_net().eval()
    with torch.no_grad():
        x = torch.rand(300, 1, 6, 6)
        x2 = (x + (torch.rand_like(x) - 0.5) * 0.2).clamp(0, 1)
        lhs = (net(x) - net(x2)).abs().amax(1)
        rhs = (x - x2).flatten(1).abs().amax(1) * net.lipschitz()
    assert net.lipschitz() == pytest.approx(4.0)
    assert (lhs <= rhs * (1 + 1e-5) + 1e-5).all()


@pytest.mark.parametrize("make", [small_net, small_mlp])
def test_model_interval_contains_sampled_logits(make):
    net = make().eval()
    # Nudge running means away from zero so the inference-time shift matters.
    for m in net.modules():
        if isinstance(m, MeanShift):
            m.running_mean.normal_()
    x = torch.rand(20, *net.config.input_shape)
    eps = 0.05
    from linfdist.certify import logit_bounds

    with torch.no_grad():
        lo, hi = logit_bounds(net, x, eps)
        for _ in range(30):
            xs = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)
            y = net(xs)
            assert (y >= lo - 1e-4).all() and (y <= hi + 1e-4).all()


def test_set_p_reaches_every_layer():
    net = small_mlp()
    net.set_p(8.0)
    layers = [m for m in net.modules() if isinstance(m, LpDistLinear)]
    assert layers and all(m.p == 8.0 for m in layers) and net.config.p == 8.0


@pytest.mark.parametrize("make", [small_net, small_mlp])
def test_hub_round_trip_is_bit_identical(tmp_path, make):
    net = make()
    net(torch.rand(8, *net.config.input_shape))  # move running means
    net.eval()
    net.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    raw = json.loads((tmp_path / "config.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert raw["p"] == "inf" and raw["architecture"] == type(net).__name__
    loaded = load_pretrained(tmp_path)
    assert type(loaded) is type(net) and loaded.config == net.config
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.rand(4, *net.config.input_shape)
    assert torch.equal(net(x), loaded(x))
    via_mixin = type(net).from_pretrained(tmp_path).eval()
    assert via_mixin.config == net.config and torch.equal(via_mixin(x), net(x))


def test_config_round_trips_through_dict():
    cfg = LinfDistNetMLPConfig(p=8.0, width=7)
    assert LinfDistNetMLPConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert LinfDistNetConfig.from_dict(LinfDistNetConfig().to_dict()).p == math.inf


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"std": [0.0]}, "positive"),
        ({"mean": [0.1, 0.2]}, "mean needs"),
        ({"depth": 0}, "depth"),
        ({"p": "banana"}, "could not convert"),
    ],
)
def test_bad_config_is_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        LinfDistNetConfig(**fields)


def test_unknown_config_field_and_wrong_architecture_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown LinfDistNetConfig field"):
        LinfDistNetConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="cannot build a LinfDistNet"):
        LinfDistNet(LinfDistNetConfig(architecture="LinfDistNetMLP"))
    small_mlp().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architecture"] = "ResNet50"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown architecture 'ResNet50'"):
        load_pretrained(tmp_path)
    config["architecture"] = "LinfDistNetMLP"
    config["dropout"] = 0.5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown LinfDistNetMLPConfig field.*dropout"):
        load_pretrained(tmp_path)
    config.pop("dropout")
    std = config.pop("std")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="field.*missing: std"):
        load_pretrained(tmp_path)
    config["std"] = std
    config["width"] = 99
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_pretrained(tmp_path)


def test_large_weights_are_sharded_and_load_bit_identical(tmp_path, monkeypatch):
    """Above SHARD_BYTES: model-0000k-of-0000n.safetensors + index; loading restores every bit."""
    from linfdist import models

    monkeypatch.setattr(models, "SHARD_BYTES", 4000)
    net = LinfDistNet(LinfDistNetConfig(input_shape=[1, 4, 4], depth=4, width=24))
    net.save_pretrained(tmp_path)
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) >= 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    assert [p.name for p in models.weight_files(tmp_path)] == shards
    for loaded in (load_pretrained(tmp_path), LinfDistNet.from_pretrained(tmp_path)):
        for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="not a LinfDistNetMLP"):
        LinfDistNetMLP.from_pretrained(tmp_path)
    # a truncated shard, a pickle in its place and a missing shard are each refused with one line
    last = tmp_path / shards[-1]
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained(tmp_path)
    torch.save(net.state_dict(), last)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained(tmp_path)
    last.unlink()
    with pytest.raises(FileNotFoundError, match="misses a shard"):
        load_pretrained(tmp_path)
