"""A single-process MAML iteration for tests, debugging and benchmarks (no Ray, no workers).

The project-wide local runtime lives in `rlmeta.distributed`; this is the smallest loop that
drives `MAMLAlgorithm` end to end on one list of envs.
"""

from __future__ import annotations

import gymnasium as gym

from rlmeta.algorithm import Algorithm, TaskResult, TaskSpec
from rlmeta.tasks import set_task


def sample_meta_batch(
    algorithm: Algorithm, envs: list[gym.Env], specs: list[TaskSpec], weights_version: int = 0
) -> list[TaskResult]:
    """`run_task` on each spec in turn, with every env set to that spec's task first."""
    results = []
    for spec in specs:
        for env in envs:
            set_task(env, spec.task)
        results.append(algorithm.run_task(envs, spec, weights_version))
    return results


def run_local(
    algorithm: Algorithm, envs: list[gym.Env], specs: list[TaskSpec], weights_version: int = 0
) -> dict[str, float]:
    """One meta-iteration: sample every task, then one `update`; returns the update's metrics."""
    return algorithm.update(sample_meta_batch(algorithm, envs, specs, weights_version))
