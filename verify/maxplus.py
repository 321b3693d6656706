"""The verifier's float64 max-plus products: its own compiled helper (verify/csrc/maxplus.c, loaded
with ctypes), else numpy. Both give the same values: every entry is a maximum of exactly rounded
differences, which no order of evaluation changes.

``LINFDIST_VERIFY_NUMPY=1`` forces the numpy path, ``LINFDIST_VERIFY_ISA=portable|avx2|avx512`` one of the
helper's instruction sets (tests run every one this CPU has; default: the widest).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

import numpy as np

from linfdist.verify import parallel

ENV_NUMPY, ENV_ISA = "LINFDIST_VERIFY_NUMPY", "LINFDIST_VERIFY_ISA"
ISAS = ("portable", "avx2", "avx512")
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
                lib.vf_extremes.argtypes = [_D, _I64, _I64, _D, _I64, _D, _D, ctypes.c_int, ctypes.c_int]
                lib.vf_extremes.restype = ctypes.c_int
                lib.vf_isa_supported.argtypes = [ctypes.c_int]
                lib.vf_isa_supported.restype = ctypes.c_int
            except (OSError, AttributeError):
                lib = None
        _STATE["lib"] = lib
    return _STATE["lib"]


def supported_isas() -> list[str]:
    """The helper's instruction sets this CPU runs (none without the helper)."""
    lib = _library()
    return [name for code, name in enumerate(ISAS) if lib is not None and lib.vf_isa_supported(code)]


def _isa() -> int:
    """The instruction set asked for through LINFDIST_VERIFY_ISA (-1: the widest); a bad one is refused."""
    name = os.environ.get(ENV_ISA, "")
    if not name:
        return -1
    if name not in supported_isas():
        raise ValueError(f"{ENV_ISA}={name}: this CPU's max-plus instruction sets are {', '.join(supported_isas())}")
    return ISAS.index(name)


def backend() -> str:
    """What computes the float64 max-plus products here: 'compiled' (with its instruction set) or 'numpy'."""
    if _library() is None:
        return "numpy"
    isa = _isa()
    return f"compiled {ISAS[isa] if isa >= 0 else supported_isas()[-1]}"


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
    threads = 1 if parallel.nested() else parallel.cores()
    status = lib.vf_extremes(ptr(a), n, k, ptr(weight_t), m, ptr(above), ptr(below), threads, _isa())
    if status == -2:
        raise MemoryError(f"max-plus helper: no memory for W^T {weight_t.shape} in panels")
    if status != 0:
        raise ValueError(f"max-plus helper refused shapes a {a.shape}, W^T {weight_t.shape}")
    return above, below
