"""What a rollout can fail with, as the driver sees it."""

from __future__ import annotations

from dataclasses import dataclass


class RolloutError(RuntimeError):
    """A task could not be sampled: the message names the env, the task and the step (one line)."""


class RayAddressError(ConnectionError):
    """The Ray address given does not answer; the message names it (one line)."""


class LearnerError(RolloutError):
    """A learner of the group died or cannot take its share: the run stops (one line, naming it)."""


@dataclass
class TaskFailure:
    """A worker's report that a task failed inside the env, returned instead of a `TaskResult`.

    `fatal` marks failures that retrying or dropping cannot fix (the worker could not build its
    envs), so the run stops whatever `on_env_error` says.
    """

    index: int
    seed: int
    message: str
    fatal: bool = False
