"""Training on several processes with torch.distributed (torchrun): the world, shards of a global batch,
and the collectives training needs.

``torchrun --nproc-per-node N -m linfdist train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address in the environment; ``World.from_env`` joins the process group they describe (NCCL
for CUDA devices, gloo for the CPU, unless told otherwise). Without them a run is one process and
nothing here starts a process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from linfdist.errors import LinfdistError

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that evaluates, logs, writes files and shows progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu", backend: str = "auto") -> World:
        """The world torchrun's environment describes, its process group joined (once); one process without it."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        if backend not in BACKENDS:
            raise LinfdistError(f"distributed backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "auto":
            backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl" and torch.device(device).type != "cuda":
            raise LinfdistError("the nccl backend needs CUDA devices (--device cuda); use gloo on the CPU")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            # torchrun's store, its keys prefixed by the restart: after --max-restarts starts the workers again,
            # gloo would otherwise read the addresses the previous attempt's workers published
            store, rank, world_size = next(dist.rendezvous("env://"))
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            dist.init_process_group(backend, store=dist.PrefixStore(f"linfdist/attempt-{attempt}", store), rank=rank,
                                    world_size=world_size)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank)

    def device(self, device: str) -> str:
        """The device this rank trains on: its own GPU (LOCAL_RANK) for cuda, the CPU otherwise."""
        return f"cuda:{self.local_rank}" if torch.device(device).type == "cuda" and self.distributed else device

    def shard(self, n: int) -> slice:
        """This rank's rows of a global batch of n: consecutive, sizes differing by at most one."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
        if not self.distributed:
            return [obj]
        parts = [None] * self.size if self.main else None
        dist.gather_object(obj, parts, dst=0)
        return parts

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks (float64), the same list on every rank."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: NCCL reduces CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def global_batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over dim 0 of the global batch whose shard x is, differentiable (all-reduced sums: the
    gradient reaches every rank's samples); x.mean(0) without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x.mean(0)
    import warnings

    from torch.distributed.nn.functional import all_reduce  # torch's differentiable all-reduce

    count = torch.full((1, *x.shape[1:]), float(len(x)), dtype=x.dtype, device=x.device)
    with warnings.catch_warnings():  # deprecated since torch 2.x for a private successor; still the public one
        warnings.simplefilter("ignore", FutureWarning)
        sums = all_reduce(torch.cat([x.sum(0, keepdim=True), count]))  # sums and sample count in one collective
    return sums[0] / sums[1]
