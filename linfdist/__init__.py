"""linfdist: certified-robust ℓ∞-distance nets — kernels, model zoo, ONNX export, verifier.

Submodules load on first use, so ``import linfdist`` stays light (no torch import).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "certify", "cli", "data", "evaluate", "export", "functional", "kernels", "models", "nn", "recipe", "train",
    "verify", "workflows", "zoo",
)
#: Functions at the top level, loaded on first use: the one loader of models.
_FUNCTIONS = {"load_model": "linfdist.workflows.resolve", "create_model": "linfdist.workflows.resolve"}
__all__ = ["__version__", *_SUBMODULES, *_FUNCTIONS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"linfdist.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'linfdist' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
