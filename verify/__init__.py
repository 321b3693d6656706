"""The independent verifier: numpy + onnx only, never torch nor any other linfdist package.

It reads an exported ONNX graph (``load_graph``), walks it with one rule per op and
derives margin (Lipschitz) and interval certificates that hold in exact arithmetic and
for float32 runtimes (``certify``), and compares runtimes over a test set
(``verify_dataset``). Run it as ``python -m linfdist.verify MODEL.onnx`` or
``linfdist verify``. Submodules load on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"load_graph": "graph", "certify": "certificates", "verify_dataset": "compare", "Refused": "errors"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"linfdist.verify.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'linfdist.verify' has no attribute {name!r}")
