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

Run it as ``linfdist bench [OPTIONS]`` or ``python benchmarks/bench_lp_dist.py [OPTIONS]``
(``--help`` lists them), e.g. ``--shapes paper --passes fwd --p inf`` or ``--p sweep --passes fwdbwd``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from dataclasses import asdict, dataclass

import torch

#: (N, M, K): batch × out features × in features.
SHAPES = {
    "tiny": [(64, 96, 80)],
    "small": [(128, 1024, 784), (512, 1024, 1024)],
    "paper": [(512, 5120, 784), (512, 5120, 3072), (512, 5120, 5120)],
    "anneal": [(512, 128, 784), (512, 512, 512)],
    "zoo": [(256, 512, 784), (256, 512, 3072), (256, 512, 512), (256, 1024, 1024)],
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


class BenchError(Exception):
    """Bad options: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog="linfdist bench", description="Time the ℓp-dist backends against torch.cdist.")
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    b.add_argument("--shapes", help="comma-separated sets: tiny, small, paper, anneal, zoo (default: small,paper on CUDA, "
                                    "small on CPU)")
    b.add_argument("--p", default="inf,8", help="comma-separated p values, or 'sweep' for the p-annealing set "
                                                "8,16,17,21,21.01,55,381,1000,999.5,inf (default: inf,8)")
    b.add_argument("--passes", help="comma-separated: fwd, bwd, fwdbwd, bounds, step (default: fwd,bwd,bounds,step on "
                                    "CUDA; fwd,bwd,bounds on CPU)")
    b.add_argument("--backends", help="comma-separated: triton, native, torch, torch-compile, cdist (default: all that run here, "
                                      "but not torch-compile or the Triton interpreter)")
    b.add_argument("--repeat", type=int, default=5, help="timed runs per row; the median is reported (default 5)")
    b.add_argument("--net", choices=["cifar10", "mnist"], default="mnist",
                   help="the step benchmark's net: mnist (5 layers, 784 inputs) or cifar10 (6 layers, 3072 inputs)")
    b.add_argument("--width", type=int, default=5120, help="hidden width of the step benchmark's net")
    b.add_argument("--batch", type=int, default=512, help="batch size of the step benchmark")
    b.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return b


def _csv(value: str, allowed, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise BenchError(f"unknown {what} {', '.join(bad) or repr(value)}; choose from {', '.join(allowed)}")
    return items


def main(argv=None) -> int:
    """``linfdist bench``: parse the options, run every row, print the table (and write --json)."""
    args = build_parser().parse_args(argv)
    from linfdist.device import device_name

    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available")
    for name in ("repeat", "width", "batch"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name} must be >= 1, got {getattr(args, name)}")
    on_gpu = device == "cuda"
    sets = _csv(args.shapes or ("small,paper" if on_gpu else "small"), list(SHAPES), "shape set")
    shapes = [s for name in sets for s in SHAPES[name]]
    passes = _csv(args.passes or ("fwd,bwd,bounds,step" if on_gpu else "fwd,bwd,bounds"), PASSES, "pass")
    try:
        ps = list(P_SWEEP) if args.p == "sweep" else [float(v) for v in args.p.split(",")]
    except ValueError:
        raise BenchError(f"--p must be comma-separated numbers or inf, got {args.p!r}") from None
    runnable = available_backends(device)
    default = [b for b in runnable if on_gpu or b != "triton"]
    backends = _csv(args.backends or ",".join(default), BACKENDS, "backend")
    missing = [b for b in backends if b not in runnable and b != "torch-compile"]
    if missing:
        raise BenchError(f"backend {', '.join(missing)} cannot run on {device} here (Triton needs CUDA or TRITON_INTERPRET=1)")

    print(f"# linfdist bench on {device_name(device)}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; median of {args.repeat}")
    print(format_line(HEADER), flush=True)
    report = lambda row: print(format_line(format_row(row)), flush=True)  # noqa: E731
    rows = run(shapes, ps, passes, backends, device, args.repeat, args.width, args.batch, report=report,
                     net=args.net)
    if args.json:
        doc = {"schema": "linfdist.bench/1", "device": device_name(device), "torch": torch.__version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": [r.as_dict() for r in rows]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"linfdist bench: error: {err}", file=sys.stderr)
        sys.exit(2)
