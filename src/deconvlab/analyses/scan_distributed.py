"""torch.distributed for scans: start and end the process group, and gather every rank's top-k lists.

Under ``torchrun`` (``WORLD_SIZE`` > 1) ``process_group()`` starts the default group with gloo on CPU and
NCCL on GPU; run alone it does nothing and the scan sees rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_device() -> torch.device:
    """This rank's GPU (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@contextmanager
def process_group() -> Iterator[None]:
    """Start torch.distributed from torchrun's environment when ``WORLD_SIZE`` > 1, and end it after."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(default_device())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_gather(obj):
    """Every rank's ``obj`` in rank order (a one-item list without a process group)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
