"""The independent verifier: numpy + onnx only, never torch nor any other linfdist package.

It re-derives Lipschitz and interval certificates from an exported ONNX graph
(issue 8: not yet available). Until then ``linfdist verify`` certifies in torch
(``linfdist.certify``). Keep every import in this package torch-free.
"""
