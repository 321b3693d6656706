"""The native CPU kernels (kernels/csrc, plain C ABI through ctypes) with autograd.

The library is built by ``pip install`` (setup.py, optional): if it is missing, or the
CPU cannot run any of its paths, ``available()`` is False and ``reason()`` says why;
``linfdist.functional`` then keeps the pure-torch path. The instruction set is the widest
this CPU supports (AVX-512, AVX2, scalar); ``LINFDIST_NATIVE_ISA`` forces one, and
``LINFDIST_NATIVE_LIB`` points at another build of the library. ctypes releases the GIL
during every call; the kernels use ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os

import torch

from linfdist.kernels import contract, torch_dist

ISAS = {"scalar": 0, "avx2": 1, "avx512": 2}
ENV_ISA, ENV_LIB = "LINFDIST_NATIVE_ISA", "LINFDIST_NATIVE_LIB"
_F, _I32, _I64 = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32), ctypes.c_int64
_SIGNATURES = {
    "ld_isa_supported": ([ctypes.c_int], ctypes.c_int),
    "ld_best_isa": ([], ctypes.c_int),
    "ld_tile_width": ([ctypes.c_int], _I64),
    "ld_linf_forward": ([_F, _I64, _I64, _F, _I64, _I64, _F, _I32, ctypes.c_int, ctypes.c_int], ctypes.c_int),
    "ld_interval_linf": ([_F, _F, _I64, _I64, _F, _I64, _I64, _F, _F, _I32, _I32, ctypes.c_int, ctypes.c_int],
                         ctypes.c_int),
    "ld_lp_forward": ([_F, _I64, _I64, _F, _I64, _I64, ctypes.c_double, _F, ctypes.c_int, ctypes.c_int], ctypes.c_int),
    "ld_lp_backward": ([_F, _F, _F, _F, _I64, _I64, _I64, ctypes.c_double, _F, _F, ctypes.c_int, ctypes.c_int],
                       ctypes.c_int),
    "ld_linf_backward": ([_F, _F, _I32, _F, _I64, _I64, _I64, _F, _F, ctypes.c_int], ctypes.c_int),
    "ld_pack_panels": ([_F, _I64, _I64, _I64, _I64, _F, ctypes.c_int, ctypes.c_int], ctypes.c_int),
}
_STATE: dict = {}


def _library_path() -> str | None:
    if os.environ.get(ENV_LIB):
        return os.environ[ENV_LIB]
    spec = importlib.util.find_spec("linfdist.kernels._native")
    return spec.origin if spec is not None else None


def _load():
    """(library, isa) or (None, reason); computed once."""
    if "lib" in _STATE:
        return _STATE["lib"], _STATE["isa"]
    lib, isa = None, "the native library was not built (pip install needs a C compiler); using pure torch"
    path = _library_path()
    if path:
        try:
            lib = ctypes.CDLL(path)
            for name, (args, result) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = args, result
        except (OSError, AttributeError) as err:
            lib, isa = None, f"native library {path} unusable: {err}"
        else:
            isa = _choose_isa(lib)  # a bad LINFDIST_NATIVE_ISA is an error, not a silent fallback
    _STATE["lib"], _STATE["isa"] = lib, isa
    return lib, isa


def _choose_isa(lib) -> int:
    forced = os.environ.get(ENV_ISA)
    if not forced:
        return lib.ld_best_isa()
    if forced not in ISAS:
        raise ValueError(f"{ENV_ISA}={forced!r}: choose one of {', '.join(ISAS)}")
    if not lib.ld_isa_supported(ISAS[forced]):
        raise ValueError(f"{ENV_ISA}={forced}: this CPU cannot run it")
    return ISAS[forced]


def available() -> bool:
    return _load()[0] is not None


def reason() -> str:
    """Why the native path is unavailable ('' when it is available)."""
    lib, isa = _load()
    return "" if lib is not None else isa


def isa_name() -> str | None:
    """The instruction set in use ('avx512', 'avx2', 'scalar'), or None without the library."""
    lib, isa = _load()
    return None if lib is None else {v: k for k, v in ISAS.items()}[isa]


def supported_isas() -> list[str]:
    lib, _ = _load()
    return [] if lib is None else [name for name, code in ISAS.items() if lib.ld_isa_supported(code)]


def _ptr(t: torch.Tensor | None, kind=_F):
    return None if t is None else ctypes.cast(t.data_ptr(), kind)


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"native {what} failed with status {status} (bad arguments reached the C library)")


def _operands(weight: torch.Tensor, *inputs: torch.Tensor) -> None:
    contract.check_operands(weight, *inputs)
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        raise ValueError(f"the native kernels take float32 CPU tensors, got {weight.dtype} on {weight.device}")


def _panels(weight: torch.Tensor, isa: int, lib) -> tuple[torch.Tensor, int]:
    """(W packed as panels [Mp / T, K, T] of the kernel's tile width T, zero padded; Mp), packed by the
    library's threads straight from W's strides."""
    m, k = weight.shape
    tile = lib.ld_tile_width(isa)
    mp = -(-m // tile) * tile
    wt = weight.new_empty(mp // tile, k, tile)
    _check(lib.ld_pack_panels(_ptr(weight), m, k, weight.stride(0), weight.stride(1), _ptr(wt), isa, _threads()),
           "panel packing")
    return wt, mp


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or ±inf in t. A sum is non-finite whenever an element is, so a finite sum settles it at a
    fraction of the cost of an elementwise isfinite; a sum that overflowed takes the exact check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _threads() -> int:
    return torch.get_num_threads()


def linf_forward(x: torch.Tensor, weight: torch.Tensor, want_index: bool):
    lib, isa = _load()
    x = x.contiguous()
    n, k = x.shape
    m = weight.shape[0]
    wt, mp = _panels(weight.detach(), isa, lib)
    y = x.new_empty(n, m)
    index = torch.empty(n, m, dtype=torch.int32) if want_index else None
    _check(lib.ld_linf_forward(_ptr(x), n, k, _ptr(wt), mp, m, _ptr(y), _ptr(index, _I32), isa, _threads()),
           "l-inf forward")
    return y, index


def lp_forward(x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    lib, isa = _load()
    x = x.contiguous()
    n, k = x.shape
    m = weight.shape[0]
    wt, mp = _panels(weight.detach(), isa, lib)
    y = x.new_empty(n, m)
    _check(lib.ld_lp_forward(_ptr(x), n, k, _ptr(wt), mp, m, p, _ptr(y), isa, _threads()), "lp forward")
    return y


def _gradient_buffers(ctx, x, weight, grad_y):
    """Contiguous x, w, grad_y and zeroed gradient buffers for the inputs autograd asks for."""
    x, w, g = x.contiguous(), weight.contiguous(), grad_y.contiguous()
    gx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
    gw = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
    return x, w, g, gx, gw


class NativeLinfDist(torch.autograd.Function):
    """p = ∞: forward with the arg-max index, backward through it (race-free, torch's summation order)."""

    @staticmethod
    def forward(ctx, x, weight, differentiable):
        y, index = linf_forward(x, weight, differentiable)
        if differentiable:
            ctx.save_for_backward(x, weight, index)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        lib, _ = _load()
        x, weight, index = ctx.saved_tensors
        x, w, g, gx, gw = _gradient_buffers(ctx, x, weight, grad_y)
        n, k = x.shape
        _check(lib.ld_linf_backward(_ptr(x), _ptr(w), _ptr(index, _I32), _ptr(g), n, k, w.shape[0], _ptr(gx),
                                    _ptr(gw), _threads()), "l-inf backward")
        return gx, gw, None


class NativeLpDist(torch.autograd.Function):
    """Finite p ≥ 1: max-rescaled forward, dense backward (each gradient row owned by one thread)."""

    @staticmethod
    def forward(ctx, x, weight, p, differentiable):
        y = lp_forward(x, weight, p)
        if differentiable:
            ctx.save_for_backward(x, weight, y)
            ctx.p = p
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        lib, isa = _load()
        x, weight, y = ctx.saved_tensors
        x, w, g, gx, gw = _gradient_buffers(ctx, x, weight, grad_y)
        n, k = x.shape
        _check(lib.ld_lp_backward(_ptr(x), _ptr(w), _ptr(y), _ptr(g), n, k, w.shape[0], ctx.p, _ptr(gx), _ptr(gw),
                                  isa, _threads()), "lp backward")
        return gx, gw, None, None


class NativeIntervalLinf(torch.autograd.Function):
    """p = ∞ bounds over a box; backward through the arg-max indices with the torch reference's rules."""

    @staticmethod
    def forward(ctx, lower, upper, weight, differentiable):
        lib, isa = _load()
        lower, upper = lower.contiguous(), upper.contiguous()
        n, k = lower.shape
        m = weight.shape[0]
        wt, mp = _panels(weight.detach(), isa, lib)
        lo, hi = lower.new_empty(n, m), lower.new_empty(n, m)
        ilo = torch.empty(n, m, dtype=torch.int32) if differentiable else None
        ihi = torch.empty(n, m, dtype=torch.int32) if differentiable else None
        _check(lib.ld_interval_linf(_ptr(lower), _ptr(upper), n, k, _ptr(wt), mp, m, _ptr(lo), _ptr(hi),
                                    _ptr(ilo, _I32), _ptr(ihi, _I32), isa, _threads()), "interval bounds")
        if differentiable:
            ctx.save_for_backward(lower, upper, weight, ilo, ihi)
        return lo, hi

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lo, grad_hi):
        lower, upper, weight, ilo, ihi = ctx.saved_tensors
        gw, gl, gu = contract.backward_at_index(contract.LowerBound, weight, [lower, upper], ilo.long(), grad_lo)
        hw, hl, hu = contract.backward_at_index(contract.UpperBound, weight, [lower, upper], ihi.long(), grad_hi)
        return gl + hl, gu + hu, gw + hw, None


def native_lp_dist(x: torch.Tensor, weight: torch.Tensor, p: float = math.inf) -> torch.Tensor:
    """‖x[n] − weight[m]‖_p [N, M] on the native kernels (float32 CPU tensors; NaN inputs take the torch path)."""
    p = contract.check_p(p)
    _operands(weight, x)
    if not available():
        raise RuntimeError(reason())
    if not (_all_finite(x) and _all_finite(weight)):
        return torch_dist.torch_lp_dist(x, weight, p)  # the vector max would drop NaN; torch propagates it
    track = contract.differentiable(x, weight)
    if math.isinf(p):
        return NativeLinfDist.apply(x, weight, track)
    return NativeLpDist.apply(x, weight, p, track)


def native_interval_lp_dist(lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor, p: float = math.inf):
    """(lo, hi) bounds over the box on the native kernels (p = ∞; finite p takes the torch path)."""
    p = contract.check_p(p)
    _operands(weight, lower, upper)
    contract.check_box(lower, upper)
    if not available():
        raise RuntimeError(reason())
    finite = all(_all_finite(t) for t in (lower, upper, weight))
    if not math.isinf(p) or not finite:
        return torch_dist.torch_interval_lp_dist(lower, upper, weight, p)
    return NativeIntervalLinf.apply(lower, upper, weight, contract.differentiable(lower, upper, weight))
