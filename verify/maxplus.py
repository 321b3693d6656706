"""The verifier's float64 max-plus products: its own compiled helper (verify/csrc/maxplus.c, loaded
with ctypes), else numpy. Both give the same values: every entry is a maximum of exactly rounded
differences, which no order of evaluation changes.

``LINFDIST_VERIFY_NUMPY=1`` forces the numpy path (tests compare the two).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

import numpy as np

ENV_NUMPY = "LINFDIST_VERIFY_NUMPY"
_STATE: dict = {}
_D, _I64 = ctypes.POINTER(ctypes.c_double), ctypes.c_int64


def _library():
    """The ctypes library, or None (not built, or numpy forced); looked up once."""
    if "lib" not in _STATE:
        lib = None
        spec = importlib.util.find_spec("linfdist.verify._maxplus")
        if spec is not None and spec.origin and not os.environ.get(ENV_NUMPY):
            try:
                lib = ctypes.CDLL(spec.origin)
                lib.vf_extremes.argtypes = [_D, _I64, _I64, _D, _I64, _D, _D, ctypes.c_int]
                lib.vf_extremes.restype = ctypes.c_int
            except (OSError, AttributeError):
                lib = None
        _STATE["lib"] = lib
    return _STATE["lib"]


def backend() -> str:
    """What computes the float64 max-plus products here: 'compiled' or 'numpy'."""
    return "compiled" if _library() is not None else "numpy"


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def extremes(a: np.ndarray, weight_t: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(max_k (a[n,k] − W[m,k]), max_k (W[m,k] − a[n,k])) for a [N, K] and W^T [K, M] (both float64,
    C-contiguous) through the compiled helper; None where it is not available."""
    lib = _library()
    if lib is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.float64)
    n, k = a.shape
    m = weight_t.shape[1]
    above, below = np.empty((n, m)), np.empty((n, m))
    ptr = lambda x: x.ctypes.data_as(_D)  # noqa: E731
    if lib.vf_extremes(ptr(a), n, k, ptr(weight_t), m, ptr(above), ptr(below), _threads()) != 0:
        raise ValueError(f"max-plus helper refused shapes a {a.shape}, W^T {weight_t.shape}")
    return above, below
