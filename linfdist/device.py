"""One line naming the hardware a computation ran on (for benchmarks and model cards)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    """``cuda``: the GPU's name; ``cpu``: model, torch threads and the CPU kernel path."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    from linfdist.kernels import native

    kernels = f"native {native.isa_name()}" if native.available() else "no native kernels"
    return f"{cpu_model()} CPU, {torch.get_num_threads()} torch threads, {kernels}"
