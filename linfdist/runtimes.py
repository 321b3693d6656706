"""Torch runtimes for the verifier's cross-runtime comparison (adapters: verify never imports torch)."""

from __future__ import annotations

import numpy as np
import torch

from linfdist.verify.runtimes import Runtime, unavailable

BATCH = 500


def _logits(model, device: str):
    @torch.no_grad()
    def run(pixels: np.ndarray) -> np.ndarray:
        outs = [model(torch.from_numpy(pixels[i: i + BATCH]).to(device)).float().cpu().numpy()
                for i in range(0, len(pixels), BATCH)]
        return np.concatenate(outs)
    return run


def _copy(model, backend: str, device: str = "cpu"):
    copy = type(model)(model.config).to(device).eval()
    copy.load_state_dict(model.state_dict())
    copy.set_backend(backend)
    return copy


def torch_runtimes(model) -> dict[str, Runtime]:
    """torch on CPU with the pure-torch kernels and with the native ones, and torch on CUDA with the
    Triton kernels; ``model`` may be a reason string when no torch model could be built."""
    if isinstance(model, str):
        return {name: unavailable(name, model) for name in ("torch-cpu", "torch-native", "torch-triton")}
    from linfdist.kernels import native, triton_available

    model = model.float().eval()
    out = {"torch-cpu": Runtime("torch-cpu", f"torch {torch.__version__} CPU float32, pure-torch kernels",
                                _logits(_copy(model, "torch"), "cpu"))}
    if native.available():
        out["torch-native"] = Runtime("torch-native", f"torch {torch.__version__} CPU float32, native "
                                      f"{native.isa_name()} kernels", _logits(_copy(model, "native"), "cpu"))
    else:
        out["torch-native"] = unavailable("torch-native", native.reason())
    if not torch.cuda.is_available():
        out["torch-triton"] = unavailable("torch-triton", "no CUDA device")
    elif not triton_available():
        out["torch-triton"] = unavailable("torch-triton", "triton is not installed")
    else:
        name = torch.cuda.get_device_name()
        out["torch-triton"] = Runtime("torch-triton", f"torch {torch.__version__} + Triton on {name}",
                                      _logits(_copy(model, "triton", "cuda"), "cuda"))
    return out
