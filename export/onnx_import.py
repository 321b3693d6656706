"""Rebuild the torch model an exported ONNX file came from (its config metadata + initializers).

Lets ``linfdist verify model.onnx`` run the torch runtimes on exactly the weights in the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from linfdist.models import ARCHITECTURES


def model_from_onnx(path) -> torch.nn.Module:
    """The LinfDistNet / LinfDistNetMLP whose weights are the file's initializers (eval mode)."""
    path = Path(path)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "linfdist.config" not in meta:
        raise ValueError(f"{path} has no linfdist.config metadata: it was not exported by linfdist")
    try:
        data = json.loads(meta["linfdist.config"])
        cls = ARCHITECTURES[data["architecture"]]
        config = cls.config_class.from_dict(data, complete=True)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: unreadable linfdist.config metadata ({err})") from None
    model = cls(config)
    names = set(model.state_dict())
    state = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
             for init in proto.graph.initializer if init.name in names}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: initializers do not fit its config ({str(err).splitlines()[0]})") from None
    return model.eval()
