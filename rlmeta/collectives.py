"""What a learner holding one shard of a meta-batch needs from the others: sums across them.

An algorithm's update takes `collective.sum_` of its shard's share of every batch-wide quantity
(a loss, a gradient, a Fisher-vector product, a step count) and continues with the total, so
every learner of a group computes the same step on the same numbers. `Solo` is one learner on
the whole batch; `TorchDistributed` wraps an initialised `torch.distributed` process group
(gloo on CPU, NCCL on GPUs), which the runtime sets up and injects
(`rlmeta.algorithm.Algorithm.set_collective`). Nothing here knows about Ray.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor


class Collective(Protocol):
    """Sums across the learners of a group; `rank` 0 of `world_size` is the one that publishes."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def sum_(self, tensor: Tensor) -> Tensor:
        """Replace `tensor` in place by its sum over the group and return it (same on every
        learner). Not differentiable: pass detached values."""


class Solo:
    """One learner holding the whole meta-batch: a sum over the group is the value itself."""

    rank = 0
    world_size = 1

    def sum_(self, tensor: Tensor) -> Tensor:
        return tensor


class TorchDistributed:
    """The default `torch.distributed` process group of this process (already initialised)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialised; call init_process_group before building "
                "a TorchDistributed collective"
            )

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def world_size(self) -> int:
        return dist.get_world_size()

    def sum_(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def is_group(collective: Collective | None) -> bool:
    """True when the batch is spread over several learners (the algorithms' sharded path)."""
    return collective is not None and collective.world_size > 1


def sum_tensor(collective: Collective, tensor: Tensor) -> Tensor:
    """A detached copy of `tensor` summed over the group, on the tensor's own device."""
    tensor = tensor.detach().clone()
    # NCCL reduces CUDA tensors only, so a CPU value visits the learner's GPU to be summed.
    if tensor.device.type == "cpu" and dist.is_initialized() and dist.get_backend() == "nccl":
        return collective.sum_(tensor.cuda()).cpu()
    return collective.sum_(tensor)


def sum_floats(collective: Collective, *values: float | Tensor) -> list[float]:
    """Several scalars summed over the group in one call (in float64)."""
    packed = torch.tensor([float(value) for value in values], dtype=torch.float64)
    return [float(value) for value in sum_tensor(collective, packed)]


def sum_with_floats(
    collective: Collective, vector: Tensor, *values: float | Tensor
) -> tuple[Tensor, list[float]]:
    """`vector` and some scalars summed over the group in one call (each call is a wait for
    the slowest learner). Summed in float64, so float32 shares add as float32 addition would."""
    packed = torch.cat([vector.detach().double(), torch.tensor(
        [float(value) for value in values], dtype=torch.float64, device=vector.device)])
    packed = sum_tensor(collective, packed)
    return (packed[: vector.numel()].to(vector.dtype),
            [float(value) for value in packed[vector.numel():]])


def shard_bounds(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of shard `rank` when `count` items are cut into `world_size` consecutive
    shards whose sizes differ by at most one (the larger ones first)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
