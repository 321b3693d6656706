"""Compute backends for ℓp-dist layers.

- ``linfdist.kernels.torch_dist``: pure-torch, chunked, memory-bounded reference with
  hand-written autograd; runs anywhere (optionally fused through torch.compile on CPU).
- ``linfdist.kernels.lp_dist`` / ``interval_lp_dist``: the Triton kernels
  (``triton_linf``, ``triton_lp``, ``triton_interval``, ``triton_scatter``) on CUDA
  tensors, or on CPU tensors under ``TRITON_INTERPRET=1``. Imported on first use,
  so ``import linfdist.kernels`` needs no Triton.

``linfdist.functional`` picks the backend.
"""

_TRITON_NAMES = ("lp_dist", "interval_lp_dist")


def __getattr__(name):
    if name in _TRITON_NAMES:
        from linfdist.kernels import triton_ops

        return getattr(triton_ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def triton_available() -> bool:
    """True when Triton imports (it is installed on Linux only)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
