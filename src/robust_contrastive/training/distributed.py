"""Multi-process (multi-GPU, multi-node) training on ``torch.distributed``.

[`setup_from_env`][robust_contrastive.training.distributed.setup_from_env] initialises the process
group from ``torchrun``'s environment; [`RoCLTrainer`][robust_contrastive.RoCLTrainer] then trains
with ``DistributedDataParallel``: every process takes its shard of each epoch's permutation
([`shard_indices`][robust_contrastive.training.distributed.shard_indices]), the contrastive
negatives are gathered from every process with gradients, and rank 0 alone writes files and logs.
Without ``torchrun`` (or with ``WORLD_SIZE=1``) every helper here describes a single process and
the collectives return their input (or do nothing).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# Variables set by torchrun (and torch.distributed.launch) for every worker.
_LAUNCH_VARIABLES: tuple[str, ...] = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer.") from err


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset): the number of processes launched."""
    return _env_int("WORLD_SIZE", 1)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without an initialised process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its node: ``LOCAL_RANK`` (set by torchrun), else 0."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """True on rank 0, the process that writes files and logs (always true on one process)."""
    return rank() == 0


def default_device() -> torch.device:
    """The device ``device="auto"`` means: ``cuda:LOCAL_RANK`` in a distributed run on a CUDA
    machine (``cuda:<current device>`` when ``LOCAL_RANK`` is unset), ``cuda`` on one process,
    else ``cpu``."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if not is_distributed():
        return torch.device("cuda")
    if "LOCAL_RANK" in os.environ:
        return torch.device("cuda", local_rank())
    return torch.device("cuda", torch.cuda.current_device())


def setup_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group from torchrun's environment variables.

    Does nothing (and returns False) on a single process (``WORLD_SIZE`` unset or 1) or when a
    process group is already initialised. Otherwise selects ``cuda:LOCAL_RANK`` as the current
    CUDA device (on CUDA machines) and calls ``init_process_group`` with ``init_method="env://"``.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.

    Returns:
        True when this call created the process group: pass it to
        [`teardown`][robust_contrastive.training.distributed.teardown].

    Raises:
        ValueError: ``WORLD_SIZE > 1`` but torchrun's other variables are missing.
        RuntimeError: this build of PyTorch has no ``torch.distributed``.
    """
    world = env_world_size()
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this PyTorch build has no torch.distributed.")
    if dist.is_initialized():
        return False
    missing = [name for name in _LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} but {', '.join(missing)} is not set: launch distributed runs "
            "with torchrun (torchrun --nproc_per_node=N -m robust_contrastive train ...)."
        )
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    logger.debug(
        "process group initialised: rank %d of %d (local rank %d), backend %s",
        dist.get_rank(),
        dist.get_world_size(),
        local_rank(),
        backend,
    )
    return True


def teardown(created: bool) -> None:
    """Destroy the default process group if ``created`` (``setup_from_env``'s result)."""
    if created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group_from_env(backend: str | None = None) -> Iterator[bool]:
    """[`setup_from_env`][robust_contrastive.training.distributed.setup_from_env] on entry and,
    if it created the group, teardown on exit (also after an exception); yields whether it did."""
    created = setup_from_env(backend)
    try:
        yield created
    finally:
        teardown(created)


def barrier() -> None:
    """Wait for every process (no-op on one process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over every process (``tensor`` itself on one
    process). The input is not modified."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def broadcast_buffers(*modules: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) of ``modules`` to every process.

    DistributedDataParallel broadcasts them at the start of each forward, but every process then
    updates its own copy; called at the end of each epoch, this makes every process start the
    next epoch (and a checkpoint, which holds rank 0's) from the same buffers.
    """
    if not is_distributed():
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order: ``[obj]`` on one process."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def shard_indices(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process's shard of an epoch's permutation, as ``DistributedSampler(drop_last=True)``.

    The last ``len(order) % world_size`` indices are dropped so that every process gets the same
    number of images, then process ``r`` takes every ``world_size``-th index starting at ``r``.
    With shards cut into batches of B, the union over processes of step s's batches is
    ``order[s * B * world_size : (s + 1) * B * world_size]``: the batch of one process with
    batch size ``B * world_size``.

    Args:
        order: (N,) the epoch's permutation, identical on every process.
        rank: this process's rank, in ``[0, world_size)``.

    Returns:
        (N // world_size,) indices.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    per_process = order.shape[0] // world_size
    return order[: per_process * world_size][rank::world_size]
