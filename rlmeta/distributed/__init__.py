"""Distributed runtime: rollout workers, a versioned parameter server and a learner on Ray.

The training loop calls `make_runtime(config, algorithm_factory, env_factory, tasks_per_call)`
and drives the returned `Runtime`; with `config.workers == 0` nothing here touches Ray.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from rlmeta.algorithm import Algorithm
from rlmeta.config import ExperimentConfig
from rlmeta.distributed.errors import LearnerError, RolloutError, TaskFailure
from rlmeta.distributed.runtime import Runtime, SampleHandle

__all__ = ["LearnerError", "RolloutError", "Runtime", "SampleHandle", "TaskFailure", "make_runtime"]


def make_runtime(
    config: ExperimentConfig,
    algorithm_factory: Callable[[str], Algorithm],
    env_factory: Callable[[], gym.Env],
    tasks_per_call: int = 1,
) -> Runtime:
    """`LocalRuntime` when config.workers == 0, otherwise `RayRuntime`.

    `algorithm_factory(device)` builds the algorithm; `env_factory()` builds one task env. Both
    must be picklable (functools.partial of module-level functions) so Ray can ship them. Each
    worker call samples `tasks_per_call` specs (`Algorithm.run_tasks`).
    """
    if config.workers == 0:
        if config.learners > 1:
            raise ValueError(
                f"learners: {config.learners} runs a learner group on Ray, which needs rollout "
                "workers; set workers >= 1 or learners: 1"
            )
        from rlmeta.distributed.local import LocalRuntime

        return LocalRuntime(config, algorithm_factory, env_factory, tasks_per_call)
    from rlmeta.distributed.ray_runtime import RayRuntime

    return RayRuntime(config, algorithm_factory, env_factory, tasks_per_call)
