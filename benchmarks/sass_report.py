"""Static analysis of the Triton kernels' compiled code, without a GPU.

Triton compiles for any target on a machine without one (ptxas ships with the
wheel), so CI can check what the GPU would run: that every kernel compiles for
sm_90 (H100), spills no registers, and what its inner loop issues per output
element (nvdisasm, shipped with Triton, reads the result). The floor for ℓ∞-dist is 2
instructions per output element (subtract, max); the arg-max costs 2 more (compare,
select index). tests/test_triton_compile.py holds the budgets.

    python benchmarks/sass_report.py            # the first autotune config of each kernel
    python benchmarks/sass_report.py --all      # every autotune config
    python benchmarks/sass_report.py --all --json
    python benchmarks/sass_report.py --p 8,17,1000,999.5   # the ℓp kernels as compiled for these p

TRITON_INTERPRET is ignored (compiling needs the JIT kernels).

Each kernel is compiled with the specialisations Triton's JIT makes at launch for
the layouts our wrappers pass: unit strides as constants, pointers and the other
strides 16-divisible.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass

if os.environ.pop("TRITON_INTERPRET", None):
    print("note: ignoring TRITON_INTERPRET (compiling needs the JIT)", file=sys.stderr)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from linfdist.kernels import triton_interval, triton_linf, triton_lp, triton_scatter  # noqa: E402
from linfdist.kernels.triton_common import integer_exponent  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
_POINTERS = {"X", "W", "Y", "L", "U", "LO", "HI", "A", "B", "G", "INV", "OUT", "C"}
_INDEX_POINTERS = {"IDX", "IDX_LO", "IDX_HI"}
_FLOATS = {"p", "inv_p", "e", "scale"}


@dataclass
class Variant:
    """One compiled form of a kernel: its unit strides, constexprs and per-thread tile."""

    name: str
    kernel: object
    unit_strides: tuple[str, ...]
    constexprs: dict
    rows: str = "BLOCK_N"
    cols: str = "BLOCK_M"


_K_MAJOR = ("stride_xn", "stride_wm", "stride_yn")  # the forward kernels' unit strides


def lp_variant(p: float, backward: bool = False) -> Variant:
    """The ℓp forward (or backward) kernel as the wrapper compiles it for p (the backward's power is p − 1),
    on whatever path triton_common.integer_exponent picks."""
    e, bits = integer_exponent(p - 1.0 if backward else p)
    constexprs = dict(EVEN=True, E_INT=e, E_BITS=bits)
    if backward:
        return Variant(f"lp backward, p = {p:g}", triton_lp._lp_backward_kernel, ("stride_bk", "stride_ok", "stride_ak"),
                       constexprs, rows="BLOCK_K", cols="BLOCK_A")
    return Variant(f"lp forward, p = {p:g}", triton_lp._lp_forward_kernel, _K_MAJOR, constexprs)


def variants() -> list[Variant]:
    """The kernels as the wrappers launch them on the training shapes (tiles divide the shapes)."""
    forward = dict(EVEN=True)
    return [
        Variant("linf forward, with arg-max", triton_linf._linf_forward_kernel, _K_MAJOR, dict(forward, WITH_INDEX=True)),
        Variant("linf forward, value only", triton_linf._linf_forward_kernel, _K_MAJOR, dict(forward, WITH_INDEX=False)),
        lp_variant(8.0),
        lp_variant(7.5),
        lp_variant(8.0, backward=True),
        Variant("interval, with arg-max", triton_interval._linf_interval_kernel,
                ("stride_ln", "stride_un", "stride_wm", "stride_on"), dict(forward, WITH_INDEX=True)),
        Variant("interval, values only", triton_interval._linf_interval_kernel,
                ("stride_ln", "stride_un", "stride_wm", "stride_on"), dict(forward, WITH_INDEX=False)),
        Variant("scatter, deterministic", triton_scatter._scatter_onehot_kernel, ("stride_ok", "stride_cs", "stride_is"),
                dict(forward), rows="BLOCK_K", cols="BLOCK_R"),
        Variant("scatter, atomic", triton_scatter._scatter_atomic_kernel, ("stride_ok", "stride_cs", "stride_is"),
                {}, rows="BLOCK_R", cols="BLOCK_S"),
    ]


def _signature(fn, constexprs: dict) -> tuple[dict, dict]:
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        if name in _POINTERS:
            signature[name] = "*fp32"
        elif name in _INDEX_POINTERS:
            signature[name] = "*i32"
        elif name in _FLOATS:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
        if signature[name].startswith("*") or name.startswith("stride"):
            attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, attrs


def compile_variant(variant: Variant, config: triton.Config):
    """The CompiledKernel for one variant and autotune config, for sm_90."""
    fn = variant.kernel
    while not isinstance(fn, triton.runtime.JITFunction):
        fn = fn.fn
    constexprs = {**variant.constexprs, **config.kwargs, **{s: 1 for s in variant.unit_strides}}
    signature, attrs = _signature(fn, constexprs)
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": config.num_warps})


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


@dataclass
class LoopReport:
    """The hot loops of a compiled kernel (both passes of a two-pass kernel), per iteration;
    for a kernel without a loop, the whole kernel."""

    variant: str
    config: str
    registers: int
    spill_bytes: int
    instructions: int
    loads: int
    elements: int  # outputs each thread updates per loop iteration
    opcodes: dict

    @property
    def per_element(self) -> float:
        return self.instructions / self.elements


def analyse(variant: Variant, config: triton.Config) -> LoopReport:
    """Registers, spills and the instruction mix of the kernel's hot loop."""
    compiled = compile_variant(variant, config)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        sass = subprocess.run([_tool("nvdisasm"), "-c", cubin], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", cubin], capture_output=True, text=True,
                               check=True).stdout
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    spills = sum(int(v) for v in re.findall(r"(?:STACK|LOCAL):(\d+)", usage))
    lines = sass.splitlines()
    labels = {line.rstrip(":"): i for i, line in enumerate(lines) if re.match(r"^\.L_x_\d+:", line)}
    loops = []
    for i, line in enumerate(lines):
        jump = re.search(r"BRA `\((\.L_x_\d+)\)", line)
        if jump and labels.get(jump.group(1), i) < i:
            loops.append(lines[labels[jump.group(1)]:i + 1])
    loops = [loop for loop in loops if len(loop) > 2]  # one-instruction loops are traps
    opcodes = Counter()  # summed over the k (or s) loops; a kernel without one counts whole
    for line in (line for loop in loops for line in loop) if loops else lines:
        op = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", line)
        if op:
            opcodes[op.group(1)] += 1
    threads = 32 * config.num_warps
    block = config.kwargs
    elements = block[variant.rows] * block[variant.cols] // threads
    return LoopReport(variant.name, ", ".join(f"{k}={v}" for k, v in block.items()) + f", warps={config.num_warps}",
                      registers, spills, sum(opcodes.values()), opcodes["LDG"], elements, dict(opcodes))


def report(all_configs: bool = False, ps: list[float] | None = None):
    """Yield a LoopReport per variant (and per autotune config when ``all_configs``); with ``ps``,
    the ℓp kernels at those p instead."""
    chosen = [lp_variant(p, backward) for p in ps for backward in (False, True)] if ps else variants()
    for variant in chosen:
        for config in variant.kernel.configs if all_configs else variant.kernel.configs[:1]:
            yield analyse(variant, config)


HEADER = f"{'kernel':28} {'config':40} {'regs':>4} {'spill':>5} {'elem/thr':>8} {'instr/elem':>10} {'loads/elem':>10}"


def format_report(r: LoopReport) -> str:
    return (f"{r.variant:28} {r.config:40} {r.registers:>4} {r.spill_bytes:>5} {r.elements:>8} "
            f"{r.per_element:>10.2f} {r.loads / r.elements:>10.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Instruction counts of the Triton kernels' hot loops on sm_90.")
    parser.add_argument("--all", action="store_true", help="every autotune config, not only the first")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--p", help="comma-separated p: the ℓp forward and backward kernels as compiled for each")
    args = parser.parse_args(argv)
    ps = [float(v) for v in args.p.split(",")] if args.p else None
    if not args.json:
        print(HEADER)
        print("-" * len(HEADER))
    for r in report(args.all, ps):
        line = json.dumps({**asdict(r), "per_element": r.per_element}) if args.json else format_report(r)
        print(line, flush=True)


if __name__ == "__main__":
    main()
