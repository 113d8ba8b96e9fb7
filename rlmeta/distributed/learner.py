"""The learner: runs `algorithm.update` and puts each new weights version in the object store once.

Plain class; the Ray runtime places it with `num_gpus=1` when `learner_placement` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from rlmeta.algorithm import Algorithm, TaskResult, Weights


def _identity(weights: Weights) -> Any:
    return weights


def to_cpu(value: Any) -> Any:
    """Tensors anywhere in nested dicts/lists moved to CPU, so a GPU learner's state can be
    read by a driver without one."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(item) for item in value)
    return value


class Learner:
    """Owns the learner's algorithm object. `put` stores weights and returns a handle
    (`ray.put` under Ray); the handle is wrapped in a list so Ray passes it on unresolved."""

    def __init__(
        self,
        algorithm_factory: Callable[[str], Algorithm],
        device: str,
        put: Callable[[Weights], Any] = _identity,
    ) -> None:
        self.algorithm = algorithm_factory(device)
        self.put = put

    def publish(self) -> tuple[list[Any], float]:
        """Store the current weights once; returns ([handle], seconds it took)."""
        start = time.perf_counter()
        handle = self.put(to_cpu(self.algorithm.get_weights()))
        return [handle], time.perf_counter() - start

    def update(self, results: list[TaskResult]) -> tuple[dict[str, float], list[Any], float, float]:
        """One update; returns (metrics, [new weights handle], update seconds, put seconds)."""
        start = time.perf_counter()
        metrics = self.algorithm.update(results)
        update_s = time.perf_counter() - start
        handle, put_s = self.publish()
        return metrics, handle, update_s, put_s

    def state_dict(self) -> dict[str, Any]:
        return to_cpu(self.algorithm.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state)
