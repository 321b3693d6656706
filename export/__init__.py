"""ONNX export of ℓp-dist nets with the self-describing ``ai.linfdist::LpDist`` custom op.

- ``to_onnx(model, path)`` / ``export_checkpoint(folder, path)`` write the model
  (``onnx_export``; the op's FunctionProto is in ``lp_dist_function``);
- ``session(path)`` runs it with ONNX Runtime, batch-chunked (``runtime``).
"""

from linfdist.export.onnx_export import ExportError, build_onnx, export_checkpoint, to_onnx
from linfdist.export.runtime import session

__all__ = ["ExportError", "build_onnx", "export_checkpoint", "session", "to_onnx"]
