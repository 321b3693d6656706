"""Converting the v1 and v2 authors' checkpoints (synthetic ones in their exact layouts) into our models."""

import math

import pytest
import torch

from linfdist.cli import main
from linfdist.models import load_pretrained
from linfdist.zoo.convert import convert_checkpoint


def v2_checkpoint(depth=4, width=12, pixels=784, classes=10, prefix="module.", scalar=True):
    """A state dict laid out as their MLPModel + DDP saves it, with non-trivial running means."""
    g = torch.Generator().manual_seed(0)
    state = {}
    sizes = [pixels] + [width] * (depth - 1) + [classes]
    for i in range(depth):
        state[f"{prefix}fc_dist.{i}.weight"] = torch.randn(sizes[i + 1], sizes[i], generator=g)
        if i < depth - 1:
            state[f"{prefix}fc_dist.{i}.mean_shift.running_mean"] = torch.rand(sizes[i + 1], generator=g) * 5
    state[f"{prefix}fc_dist.{depth - 1}.bias"] = torch.randn(classes, generator=g)
    if scalar:
        state[f"{prefix}scalar"] = torch.tensor([3.5])
    return {"state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0]}]}}


def v2_forward(state, x, mean, std):
    """Their MLPModel at p = ∞ in eval mode, written out: normalise, dist, − running mean, + bias, negate."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    h = ((x - mean) / std).reshape(len(x), -1)
    depth = sum(1 for k in s if k.endswith(".weight"))
    for i in range(depth):
        h = (h[:, None, :] - s[f"fc_dist.{i}.weight"][None]).abs().amax(-1)
        if i < depth - 1:
            h = h - s[f"fc_dist.{i}.mean_shift.running_mean"]
    return -(h + s[f"fc_dist.{depth - 1}.bias"])


def v1_checkpoint(depth=4, width=12, pixels=784, classes=10, prefix="module."):
    """A state dict laid out as their v1 Model(MLP(...), BoundFinalIdentity()): 1x1 'conv' weights."""
    g = torch.Generator().manual_seed(1)
    state = {}
    sizes = [pixels] + [width] * (depth - 1) + [classes]
    for i in range(depth - 1):
        state[f"{prefix}feature.fc.{i}.weight"] = torch.randn(sizes[i + 1], sizes[i], 1, 1, generator=g)
        state[f"{prefix}feature.fc.{i}.normalize.running_mean"] = torch.rand(sizes[i + 1], generator=g) * 5
    state[f"{prefix}feature.fc_last.weight"] = torch.randn(classes, width, 1, 1, generator=g)
    state[f"{prefix}feature.fc_last.bias"] = torch.randn(classes, generator=g)
    return {"state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.02, "params": [0]}]}}


def v1_forward(state, x, mean, std):
    """Their v1 MLP at p = ∞ in eval mode, written out: normalise, dist, − running mean; last: + bias; negate."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    h = ((x - mean) / std).reshape(len(x), -1)
    hidden = sum(1 for k in s if k.startswith("feature.fc.") and k.endswith(".weight"))
    for i in range(hidden):
        h = (h[:, None, :] - s[f"feature.fc.{i}.weight"][:, :, 0, 0][None]).abs().amax(-1)
        h = h - s[f"feature.fc.{i}.normalize.running_mean"]
    h = (h[:, None, :] - s["feature.fc_last.weight"][:, :, 0, 0][None]).abs().amax(-1)
    return -(h + s["feature.fc_last.bias"])


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_v1_checkpoint_converts_to_the_same_function(tmp_path, prefix):
    ckpt = v1_checkpoint(prefix=prefix)
    torch.save(ckpt, tmp_path / "v1.pth")
    model = convert_checkpoint(tmp_path / "v1.pth", "fashion-mnist", 0.1)
    assert (model.config.depth, model.config.width, model.config.std) == (4, 12, [0.352])
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), v1_forward(ckpt["state_dict"], x, 0.2860, 0.3520))


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_v2_checkpoint_converts_to_the_same_function(tmp_path, prefix):
    ckpt = v2_checkpoint(prefix=prefix)
    torch.save(ckpt, tmp_path / "model.pth")
    model = convert_checkpoint(tmp_path / "model.pth", "mnist", 0.3)
    assert (model.config.depth, model.config.width, model.config.eps, math.isinf(model.config.p)) == (4, 12, 0.3, True)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), v2_forward(ckpt["state_dict"], x, 0.1307, 0.3081))


def test_cli_convert_writes_a_loadable_hub_folder(tmp_path, capsys):
    torch.save(v2_checkpoint(width=10, pixels=3 * 32 * 32), tmp_path / "cifar.pth")
    out = tmp_path / "converted"
    assert main(["zoo", "convert", str(tmp_path / "cifar.pth"), "--dataset", "cifar10", "--eps", str(8 / 255),
                 "-o", str(out)]) == 0
    model = load_pretrained(out)
    assert model.config.input_shape == [3, 32, 32] and model.config.std == [0.2009]
    assert "linfdist verify" in capsys.readouterr().out


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize("content, message", [
    ({"state_dict": {"module.fc_linear.0.weight": torch.ones(2, 2)}}, "unexpected key"),
    ({"state_dict": {"fc_dist.0.weight": torch.ones(3, 784), "fc_dist.2.weight": torch.ones(10, 3)}}, "not 0..n-1"),
    ({"state_dict": Payload()}, "not a tensors-only"),
    ({"weights": [1, 2]}, "no state_dict of tensors"),
    ({"state_dict": {"predictor.fc1.weight": torch.ones(2, 2), "feature.fc.0.weight": torch.ones(2, 784, 1, 1)}},
     "Net\\+MLP"),
    ({"state_dict": {"feature.fc.0.weight": torch.ones(3, 1, 3, 3)}}, "convolutional"),
])
def test_bad_checkpoints_are_refused(tmp_path, content, message, capsys):
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(tmp_path / "bad.pth", "mnist", 0.1)
    assert "code ran" not in capsys.readouterr().out
