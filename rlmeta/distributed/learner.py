"""The learner: runs `algorithm.update`, puts each new weights version in the object store once
and publishes its handle to the parameter server itself, so the driver never relays weights.

Plain class; the Ray runtime places it with `num_gpus=1` when `learner_placement` says so. In a
learner group (`rlmeta.distributed.learner_group`) only rank 0 publishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from rlmeta.algorithm import Algorithm, TaskResult, Weights
from rlmeta.distributed.parameter_server import ParameterServer


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
    (`ray.put` under Ray); the handle is wrapped in a list so Ray passes it on unresolved.
    `server` is the parameter server (a client of its actor under Ray; a local one if None);
    `threads` sets torch's intra-op thread count (None: leave it); `publishes` False makes
    `update` leave publishing to another learner of its group."""

    def __init__(
        self,
        algorithm_factory: Callable[[str], Algorithm],
        device: str,
        put: Callable[[Weights], Any] = _identity,
        server: ParameterServer | None = None,
        threads: int | None = None,
        publishes: bool = True,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.algorithm = algorithm_factory(device)
        self.put = put
        self.server = server if server is not None else ParameterServer()
        self.publishes = publishes

    def publish(self, version: int, reset: bool = False) -> float:
        """Store the current weights once and publish them as `version`; returns the seconds
        it took. `reset` restarts the versions there (a restored checkpoint may be older)."""
        start = time.perf_counter()
        handle = [self.put(to_cpu(self.algorithm.get_weights()))]
        if reset:
            self.server.reset(version, handle)
        elif not self.server.publish(version, handle):
            raise ValueError(
                f"weights version {version} is not newer than the one already published; "
                "use reset=True to restart the versions"
            )
        return time.perf_counter() - start

    def update(
        self, results: list[TaskResult], version: int
    ) -> tuple[dict[str, float], float, float]:
        """One update published as `version`; returns (metrics, update seconds, put seconds)."""
        start = time.perf_counter()
        metrics = self.algorithm.update(results)
        update_s = time.perf_counter() - start
        return metrics, update_s, self.publish(version) if self.publishes else 0.0

    def state_dict(self) -> dict[str, Any]:
        return to_cpu(self.algorithm.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state)
