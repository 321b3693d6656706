"""Convert the ℓ∞-dist Net authors' released checkpoints (v1 and v2) into our Hub layout.

Both training scripts save ``{"state_dict": ..., "optimizer": ...}``, possibly under DDP's
``module.`` prefix, with inputs normalised by the dataset statistics outside the model:

- v2 (zbh2047/L_inf-dist-net-v2, ``MLPModel``): ``fc_dist.{i}.weight`` [out, in],
  ``fc_dist.{i}.mean_shift.running_mean`` (hidden layers), ``fc_dist.{last}.bias`` and an
  optional positive logit ``scalar``;
- v1 (zbh2047/L_inf-dist-net, ``Model(MLP, BoundFinalIdentity)``): ``feature.fc.{i}.weight``
  [out, in, 1, 1] with ``feature.fc.{i}.normalize.running_mean`` for the hidden layers and
  ``feature.fc_last.weight`` / ``.bias`` for the last; the "Net+MLP" variant's tanh
  ``predictor.*`` head is refused (no tanh-head architecture here yet).

We read them with ``torch.load(weights_only=True)`` only (no code from the file runs), map
the keys, put the normalisation inside the model and drop the scalar (a positive scale
changes neither the prediction nor any certificate, which use the unscaled distances).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from linfdist.data import dataset_info
from linfdist.errors import LinfdistError
from linfdist.models import LinfDistNet, LinfDistNetConfig

_V2_KEY = re.compile(r"fc_dist\.(\d+)\.(weight|bias|mean_shift\.running_mean)")
_V1_KEY = re.compile(r"feature\.fc(?:\.(\d+)|_last)\.(weight|bias|normalize\.running_mean)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a v1/v2 checkpoint file, refusing anything that needs arbitrary unpickling."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
        # torch's own message suggests weights_only=False, which would run the file's code: never say that
        raise LinfdistError(f"{path}: not a tensors-only PyTorch checkpoint ({type(err).__name__}); linfdist reads "
                            "tensors only and never unpickles code") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LinfdistError(f"{path}: no state_dict of tensors inside")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _v2_keys(path: Path, state: dict) -> dict[str, torch.Tensor]:
    ours = {}
    for key, tensor in state.items():
        if key == "scalar":
            continue
        match = _V2_KEY.fullmatch(key)
        if not match:
            raise LinfdistError(f"{path}: unexpected key {key!r}; only the v2 MLPModel (fc_dist.*) converts")
        i, kind = int(match.group(1)), match.group(2)
        ours[{"weight": f"trunk.layers.{i}.weight", "bias": f"trunk.layers.{i}.bias",
              "mean_shift.running_mean": f"trunk.shifts.{i}.running_mean"}[kind]] = tensor.float()
    return ours


def _v1_keys(path: Path, state: dict) -> dict[str, torch.Tensor]:
    if any(k.startswith("predictor.") for k in state):
        raise LinfdistError(f"{path}: a v1 'Net+MLP' checkpoint (tanh predictor head) does not convert yet; "
                         "only the plain ℓ∞-dist Net does")
    hidden = sorted({int(m.group(1)) for m in map(_V1_KEY.fullmatch, state) if m and m.group(1) is not None})
    last = len(hidden)
    ours = {}
    for key, tensor in state.items():
        match = _V1_KEY.fullmatch(key)
        if not match:
            raise LinfdistError(f"{path}: unexpected key {key!r}; only the v1 MLP (feature.fc*) converts")
        i = last if match.group(1) is None else int(match.group(1))
        kind = match.group(2)
        if kind == "weight":
            if tensor.dim() == 4 and tensor.shape[2:] != (1, 1):
                raise LinfdistError(f"{path}: {key} has kernel size {tuple(tensor.shape[2:])}: convolutional nets "
                                 "do not convert")
            tensor = tensor.reshape(tensor.shape[0], -1)
        ours[{"weight": f"trunk.layers.{i}.weight", "bias": f"trunk.layers.{i}.bias",
              "normalize.running_mean": f"trunk.shifts.{i}.running_mean"}[kind]] = tensor.float()
    return ours


def convert_checkpoint(path, dataset: str, eps: float, identity_value: float = 10.0) -> LinfDistNet:
    """A LinfDistNet equal to a v1 or v2 checkpoint's model (p = ∞, eval-mode mean shifts); the
    format is recognised from the keys."""
    data = dataset_info(dataset)
    path = Path(path)
    state = read_state_dict(path)
    v1 = any(k.startswith(("feature.", "predictor.")) for k in state)
    ours = _v1_keys(path, state) if v1 else _v2_keys(path, state)
    layers = {int(k.split(".")[2]) for k in ours if k.endswith(".weight")}
    depth = len(layers)
    if layers != set(range(depth)) or depth < 2:
        raise LinfdistError(f"{path}: layers {sorted(layers)} are not 0..n-1 with n >= 2")
    width, in_features = ours["trunk.layers.0.weight"].shape
    config = LinfDistNetConfig(
        input_shape=list(data.shape), num_classes=ours[f"trunk.layers.{depth - 1}.weight"].shape[0],
        depth=depth, width=width, identity_value=identity_value, mean=list(data.mean), std=list(data.std),
        dataset=dataset, eps=eps,
    )
    model = LinfDistNet(config)
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[1:2])
        raise LinfdistError(f"{path}: does not fit a {depth}-layer width-{width} LinfDistNet: {detail}") from None
    return model.eval()

