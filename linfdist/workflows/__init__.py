"""Workflows: what a user does, composed from the parts (core, zoo, export, verify).

- ``resolve_model`` turns any MODEL argument (zoo name or alias, checkpoint folder, Hub repo id,
  .onnx file) into one ``ModelSource``; every command resolves models through it.
- ``certify_folder`` exports a checkpoint folder to ONNX and certifies it with the independent
  verifier: the only source of the figures on cards and in the registry.
- ``train_and_certify`` trains a recipe (``linfdist.train``), certifies the result and writes its card.
- ``recertify`` re-derives a bundled model's figures into the registry; ``sync_zoo`` regenerates
  the cards' figures and the README's zoo table from the registry.

The CLI is a thin layer over these; nothing below this layer imports it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelSource": "resolve", "resolve_model": "resolve", "resolve_folder": "resolve", "load_model": "resolve",
    "create_model": "resolve",
    "certify_folder": "certification", "onnx_file": "certification",
    "train_and_certify": "training", "reproduce_command": "training",
    "recertify": "zoo_figures", "sync_zoo": "zoo_figures", "zoo_table": "zoo_figures",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"linfdist.workflows.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'linfdist.workflows' has no attribute {name!r}")
