"""Compute backends for ℓp-dist layers.

- ``linfdist.kernels.torch_dist``: pure-torch, chunked, memory-bounded reference with
  hand-written autograd; runs anywhere (optionally fused through torch.compile on CPU).

The Triton kernels (GPU) and the native SIMD library (CPU) plug in here behind the
same signatures; ``linfdist.functional`` picks the backend.
"""
