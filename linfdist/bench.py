"""Benchmarks of the ℓp-dist backends against torch.cdist, measured in one run.

Each row times one (shape, p, pass, backend): ``fwd`` (forward, no autograd),
``bwd`` (backward only, from a saved forward), ``fwdbwd`` (forward and backward through
autograd, as a training step runs a layer), ``bounds`` (ℓ∞ interval bounds, forward) or
``step`` (one training step of a net: forward, cross-entropy, backward, Adam; the 5-layer
MNIST net or the 6-layer CIFAR-10 net, on random inputs of their shape).
Element-ops/s is N·M·K per second for every pass (for ``step``,
the sum over layers); the ratios divide the torch.cdist and pure-torch times of
the same case by the row's time, and ``x p=inf`` divides the row's time by the same case's
at p = ∞ (the p = ∞ rows run first), so noise between machines cancels.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch

#: (N, M, K): batch × out features × in features.
SHAPES = {
    "tiny": [(64, 96, 80)],
    "small": [(128, 1024, 784), (512, 1024, 1024)],
    "paper": [(512, 5120, 784), (512, 5120, 3072), (512, 5120, 5120)],
    "anneal": [(512, 128, 784), (512, 512, 512)],
}
PASSES = ("fwd", "bwd", "fwdbwd", "bounds", "step")
#: ``--p sweep``: the p values p-annealing passes through, integer and not, beside p = ∞.
P_SWEEP = (8.0, 16.0, 17.0, 21.0, 21.01, 55.0, 381.0, 1000.0, 999.5, math.inf)
#: The step benchmark's nets: name -> (depth, input shape), as the training recipes build them.
NETS = {"mnist": (5, (1, 28, 28)), "cifar10": (6, (3, 32, 32))}
BACKENDS = ("triton", "native", "torch", "torch-compile", "cdist")


@dataclass
class Row:
    shape: str
    p: float
    pass_: str
    backend: str
    seconds: float
    elements: int
    vs_cdist: float | None = None
    vs_torch: float | None = None
    vs_inf: float | None = None

    @property
    def ops_per_second(self) -> float:
        return self.elements / self.seconds

    def as_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        d["p"] = "inf" if math.isinf(self.p) else self.p
        d["element_ops_per_second"] = self.ops_per_second
        return d


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, device: str, repeat: int, warmup: int = 1) -> float:
    """Median wall time of fn() over ``repeat`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def distance_fn(backend: str, p: float):
    """f(x, w) → [N, M] distances for one backend."""
    if backend == "cdist":
        return lambda x, w: torch.cdist(x, w, p=p)
    from linfdist.functional import lp_dist

    return lambda x, w: lp_dist(x, w, p, backend=backend)


def timed_call(backend: str, pass_: str, p: float, n: int, m: int, k: int, device: str):
    """The zero-argument function a row times, with its operands prepared outside the timing."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, k, device=device, generator=gen)
    w = torch.randn(m, k, device=device, generator=gen)
    if pass_ == "bounds":
        from linfdist.functional import interval_lp_dist

        lower, upper = (x - 0.1).clamp_min(0), (x + 0.1).clamp_max(1)
        return lambda: interval_lp_dist(lower, upper, w, p, backend=backend)
    f = distance_fn(backend, p)
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                return f(x, w)

        return forward
    x.requires_grad_()
    w.requires_grad_()
    y = f(x, w)
    g = torch.randn(y.shape, device=device, generator=gen)
    if pass_ == "fwdbwd":
        return lambda: torch.autograd.grad(f(x, w), (x, w), g)
    return lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True)


def step_call(backend: str, p: float, width: int, batch: int, device: str, net: str = "mnist"):
    """One Adam training step of a depth×width LinfDistNet (``NETS[net]``) on random inputs."""
    from linfdist.models import LinfDistNet, LinfDistNetConfig

    depth, input_shape = NETS[net]
    model = LinfDistNet(LinfDistNetConfig(input_shape=list(input_shape), depth=depth, width=width, p=p)).to(device)
    model.set_backend(backend)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, *input_shape, device=device, generator=gen)
    labels = torch.randint(0, 10, (batch,), device=device, generator=gen)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    layers = [(math.prod(input_shape), width)] + [(width, width)] * (depth - 2) + [(width, 10)]
    return step, sum(batch * m * k for k, m in layers)


def available_backends(device: str) -> list[str]:
    """Backends that can run on ``device`` (Triton on CUDA, or on CPU under the interpreter; the
    native kernels on CPU where they were built)."""
    from linfdist.kernels import native, triton_available

    names = ["torch", "cdist"]
    if device == "cpu" and native.available():
        names.insert(0, "native")
    if triton_available():
        if device == "cuda":
            names.insert(0, "triton")
        else:
            from linfdist.kernels.triton_common import interpreting

            if interpreting():
                names.insert(0, "triton")
    return names


def run(shapes, ps, passes, backends, device: str, repeat: int, width: int = 5120, batch: int = 512,
        report=None, net: str = "mnist") -> list[Row]:
    """Measure every case; ``report(row)`` is called as each row is ready."""
    rows, at_inf = [], {}
    for p in sorted(ps, key=lambda v: not math.isinf(v)):  # p = inf first: the other rows' reference
        for pass_ in passes:
            cases = [("step", None)] if pass_ == "step" else [(f"{n}x{m}x{k}", (n, m, k)) for n, m, k in shapes]
            for label, dims in cases:
                case_rows = []
                for backend in backends:
                    if backend == "cdist" and pass_ in ("bounds", "step"):
                        continue
                    if pass_ == "bounds" and not math.isinf(p) and backend == "triton":
                        continue
                    if pass_ == "step":
                        fn, elements = step_call(backend, p, width, batch, device, net)
                        label = f"{NETS[net][0]}x{width} {net} net, batch {batch}"
                    else:
                        fn, elements = timed_call(backend, pass_, p, *dims, device), math.prod(dims)
                    case_rows.append(Row(label, p, pass_, backend, median_seconds(fn, device, repeat), elements))
                times = {r.backend: r.seconds for r in case_rows}
                for r in case_rows:
                    r.vs_cdist = times["cdist"] / r.seconds if "cdist" in times else None
                    r.vs_torch = times["torch"] / r.seconds if "torch" in times else None
                    if math.isinf(p):
                        at_inf[(label, pass_, r.backend)] = r.seconds
                    reference = at_inf.get((label, pass_, r.backend))
                    r.vs_inf = r.seconds / reference if reference else None
                    rows.append(r)
                    if report:
                        report(r)
    return rows


HEADER = ["shape NxMxK", "p", "pass", "backend", "time", "elem-ops/s", "vs cdist", "vs torch", "x p=inf"]


def format_row(r: Row) -> list[str]:
    ratio = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    p = "inf" if math.isinf(r.p) else f"{r.p:g}"
    return [r.shape, p, r.pass_, r.backend, f"{r.seconds * 1e3:.2f} ms", f"{r.ops_per_second / 1e9:.2f} G",
            ratio(r.vs_cdist), ratio(r.vs_torch), ratio(r.vs_inf)]


WIDTHS = [26, 7, 6, 13, 12, 11, 9, 9, 9]


def format_line(cells: list[str]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, WIDTHS)).rstrip()
