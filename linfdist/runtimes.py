"""Torch runtimes for the verifier's cross-runtime comparison (adapters: verify never imports torch).

Each runs the file being verified: the chain of steps the verifier accepted from it, translated
node by node into torch (LpDist through linfdist's kernels for that runtime's backend), with the
file's own float32 constants. A graph with a step it cannot translate makes that runtime
unavailable, with the reason; nothing is rebuilt from the file's metadata.
"""

from __future__ import annotations

import numpy as np
import torch

from linfdist.functional import lp_dist
from linfdist.verify import rules
from linfdist.verify.graph import Graph
from linfdist.verify.runtimes import Runtime, unavailable

BATCH = 500


def _constant(values: np.ndarray, device: str) -> torch.Tensor:
    """A rule's constant back in float32 (the rules hold the file's float32 values as float64, exactly)."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(device)


def _sub(rule, device):
    c = _constant(rule.constant, device)
    return (lambda x: x - c) if rule.position == 0 else (lambda x: c - x)


def _affine(rule, device):
    weight, bias = _constant(rule.weight, device), _constant(rule.bias, device)
    return lambda x: torch.addmm(bias, x, weight)


def _reshape(rule, device):
    shape = rule.out_shape
    return lambda x: x.reshape(len(x), *shape)


#: rule type → (rule, device, backend) → the torch function of that step.
TRANSLATIONS = {
    rules.Identity: lambda r, d, b: (lambda x: x),
    rules.Neg: lambda r, d, b: torch.neg,
    rules.Relu: lambda r, d, b: torch.relu,
    rules.Tanh: lambda r, d, b: torch.tanh,
    rules.Add: lambda r, d, b: (lambda x, c=_constant(r.constant, d): x + c),
    rules.Sub: lambda r, d, b: _sub(r, d),
    rules.Mul: lambda r, d, b: (lambda x, c=_constant(r.constant, d): x * c),
    rules.Div: lambda r, d, b: (lambda x, c=_constant(r.constant, d): x / c),
    rules.Flatten: lambda r, d, b: _reshape(r, d),
    rules.Reshape: lambda r, d, b: _reshape(r, d),
    rules.Affine: lambda r, d, b: _affine(r, d),
    rules.MatMul: lambda r, d, b: _affine(r, d),
    rules.LpDist: lambda r, d, b: (lambda x, w=_constant(r.weight, d), p=r.p: lp_dist(x, w, p, backend=b)),
}


def graph_logits(graph: Graph, backend: str, device: str = "cpu"):
    """logits(pixels) for the graph's chain in torch float32, or ValueError naming a step it cannot translate."""
    steps = []
    for step in graph.steps:
        translate = TRANSLATIONS.get(type(step.rule))
        if translate is None:
            raise ValueError(f"no torch translation of node {step.name!r} ({type(step.rule).__name__})")
        steps.append(translate(step.rule, device, backend))

    @torch.no_grad()
    def run(pixels: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(pixels), BATCH):
            x = torch.from_numpy(pixels[i: i + BATCH]).to(device)
            for fn in steps:
                x = fn(x)
            outs.append(x.float().cpu().numpy())
        return np.concatenate(outs)

    return run


def _runtime(name: str, description: str, graph: Graph, backend: str, device: str = "cpu") -> Runtime:
    try:
        return Runtime(name, description, graph_logits(graph, backend, device))
    except ValueError as err:
        return unavailable(name, str(err))


def torch_runtimes(graph: Graph) -> dict[str, Runtime]:
    """The file's graph in torch on CPU with the pure-torch kernels and with the native ones, and on CUDA
    with the Triton kernels."""
    from linfdist.kernels import native, triton_available

    version = torch.__version__
    out = {"torch-cpu": _runtime("torch-cpu", f"torch {version} CPU float32, pure-torch kernels", graph, "torch")}
    if native.available():
        out["torch-native"] = _runtime("torch-native", f"torch {version} CPU float32, native {native.isa_name()} "
                                       "kernels", graph, "native")
    else:
        out["torch-native"] = unavailable("torch-native", native.reason())
    if not torch.cuda.is_available():
        out["torch-triton"] = unavailable("torch-triton", "no CUDA device")
    elif not triton_available():
        out["torch-triton"] = unavailable("torch-triton", "triton is not installed")
    else:
        out["torch-triton"] = _runtime("torch-triton", f"torch {version} + Triton on {torch.cuda.get_device_name()}",
                                       graph, "triton", "cuda")
    return out
