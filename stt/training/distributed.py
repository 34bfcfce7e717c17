"""DDP through ``torchrun``: a few helpers guarded by its environment variables.

``stt train`` run plainly is one process; under ``torchrun --nproc_per_node=N`` (one machine or
several, via ``--nnodes``/``--rdzv-endpoint``) each process reads RANK, LOCAL_RANK and
WORLD_SIZE, joins a process group (NCCL on GPUs, gloo on CPUs) and trains its shard of batches.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """What torchrun set for this process (a single process when nothing is set)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init_distributed(info: DistInfo, device: torch.device) -> bool:
    """Join the process group torchrun describes; True if this call created it (and so must
    end it with :func:`shutdown_distributed`)."""
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        return True
    return False


def shutdown_distributed(clean: bool = True) -> None:
    """Leave the process group, every rank together when ``clean``.

    Why the barrier and the collection: teardown used to race, and under gloo it aborted about
    once in five runs. Rank 0 alone writes the final checkpoint, the curves and result.json, so
    the other ranks destroyed the group and exited seconds before it, closing their sockets
    while rank 0's group was live. And rank 0's DDP wrapper, whose reducer keeps a reference to
    the gloo group, outlived ``destroy_process_group``: the ``_train`` frame that owns it sits in
    a garbage cycle with matplotlib's frames (``plot_curves``), so the group's sockets and
    threads were really torn down by whichever garbage collection came next, or during
    interpreter exit, where gloo's teardown is known to abort (its threads may still need the
    GIL). Now every rank waits until all are done, the garbage is collected while the group is
    still valid, and each rank then destroys the group, once, with the interpreter fully alive.

    After a failure (``clean=False``) there is no barrier: the other ranks may be blocked in
    another collective and would never reach it; torchrun stops them once this rank exits.
    """
    if not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(value, src: int = 0):
    """Rank ``src``'s ``value`` on every rank (identity when not distributed)."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(value) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def all_reduce_sum(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())
