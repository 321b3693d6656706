"""The verifier's threads. numpy releases the GIL inside large operations, so blocks of samples (or of rows)
run side by side on every core; work started from inside such a block (a max-plus product, a numpy block)
stays on that block's thread instead of starting threads of its own."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

ENV_THREADS = "LINFDIST_VERIFY_THREADS"
_LOCAL = threading.local()
_POOLS: dict[str, ThreadPoolExecutor] = {}


def cores() -> int:
    """The threads the verifier runs: LINFDIST_VERIFY_THREADS where set (``linfdist verify`` under torchrun
    gives each rank its share of the cores), else the cores this process may run on."""
    if os.environ.get(ENV_THREADS, "").isdigit() and int(os.environ[ENV_THREADS]) >= 1:
        return int(os.environ[ENV_THREADS])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def nested() -> bool:
    """True on a thread that runs one of run_blocks' blocks: its work should stay on it."""
    return getattr(_LOCAL, "inside", False)


def _inside(work):
    def run(*args):
        _LOCAL.inside = True
        try:
            return work(*args)
        finally:
            _LOCAL.inside = False
    return run


def run_blocks(n: int, rows: int, work, pool: str = "rows") -> list:
    """work(i, j) over consecutive blocks of ``rows`` of [0, n), on all cores unless called from inside a block
    (then one after the other on this thread); the results in block order. Each kind of caller (``pool``) has
    its own threads, so blocks of samples may run blocks of rows."""
    blocks = [(i, min(n, i + rows)) for i in range(0, n, max(1, rows))]
    if len(blocks) <= 1 or cores() == 1 or nested():
        return [work(*block) for block in blocks]
    if pool not in _POOLS:
        _POOLS[pool] = ThreadPoolExecutor(cores(), thread_name_prefix=f"linfdist-verify-{pool}")
    futures = [_POOLS[pool].submit(_inside(work), *block) for block in blocks]
    return [future.result() for future in futures]
