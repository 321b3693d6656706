"""The runtimes a verification compares: each a callable ``logits(pixels) -> [n, classes]``.

The verifier's own float64 numpy evaluation is the reference; ONNX Runtime (CPU, CUDA)
lives here; torch runtimes are adapters the core CLI hands in (verify never imports
torch). A runtime that cannot run is kept, with the reason, and reported as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from linfdist.verify.graph import Graph

REFERENCE = "reference"
NAMES = (REFERENCE, "torch-cpu", "torch-native", "torch-triton", "ort-cpu", "ort-cuda")
#: Elements of an LpDist body's [n, M, K] intermediate per ONNX Runtime call (4 MiB of float32).
ORT_MAX_ELEMENTS = 1 << 20


@dataclass
class Runtime:
    """A named way to compute logits, or the reason it is unavailable here."""

    name: str
    description: str
    logits: Callable[[np.ndarray], np.ndarray] | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.logits is not None


def _chunked(run, chunk: int):
    def logits(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate([run(pixels[i: i + chunk]) for i in range(0, len(pixels), chunk)])
    return logits


def ort_runtimes(graph: Graph) -> list[Runtime]:
    """ONNX Runtime on CPU and on CUDA (each unavailable with a reason where it cannot run)."""
    names = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider"}
    try:
        import onnxruntime as ort
    except ImportError:
        return [Runtime(name, f"ONNX Runtime {provider}", reason="onnxruntime is not installed")
                for name, provider in names.items()]
    chunk = max(1, ORT_MAX_ELEMENTS // graph.widest_layer)
    out = []
    for name, provider in names.items():
        description = f"ONNX Runtime {ort.__version__} {provider}"
        if provider not in ort.get_available_providers():
            out.append(Runtime(name, description, reason=f"this onnxruntime build has no {provider}"))
            continue
        try:
            session = ort.InferenceSession(str(graph.path), providers=[provider])
        except Exception as err:  # ORT raises its own exception types per failure
            out.append(Runtime(name, description, reason=f"session failed: {err}"))
            continue
        if session.get_providers()[0] != provider:
            out.append(Runtime(name, description, reason=f"ONNX Runtime fell back to {session.get_providers()[0]}"))
            continue
        run = lambda batch, s=session: s.run([graph.output_name], {graph.input_name: batch})[0]  # noqa: E731
        out.append(Runtime(name, description, _chunked(run, chunk)))
    return out


def unavailable(name: str, reason: str) -> Runtime:
    return Runtime(name, name, reason=reason)
