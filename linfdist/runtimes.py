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


def torch_runtimes(model) -> dict[str, Runtime]:
    """torch on CPU (pure-torch kernels) and torch on CUDA with the Triton kernels; ``model`` may be
    a reason string when no torch model could be built."""
    if isinstance(model, str):
        return {name: unavailable(name, model) for name in ("torch-cpu", "torch-triton")}
    from linfdist.kernels import triton_available

    cpu = model.float().eval()
    cpu.set_backend("torch")
    out = {"torch-cpu": Runtime("torch-cpu", f"torch {torch.__version__} CPU float32", _logits(cpu, "cpu"))}
    if not torch.cuda.is_available():
        out["torch-triton"] = unavailable("torch-triton", "no CUDA device")
    elif not triton_available():
        out["torch-triton"] = unavailable("torch-triton", "triton is not installed")
    else:
        gpu = type(model)(model.config).to("cuda").eval()
        gpu.load_state_dict(model.state_dict())
        gpu.set_backend("triton")
        name = torch.cuda.get_device_name()
        out["torch-triton"] = Runtime("torch-triton", f"torch {torch.__version__} + Triton on {name}", _logits(gpu, "cuda"))
    return out
