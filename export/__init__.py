"""ONNX export of ℓp-dist nets with the ``ai.linfdist::LpDist`` custom op (issue 7: not yet available)."""
