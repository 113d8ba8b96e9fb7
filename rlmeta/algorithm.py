"""The contract between an algorithm and whatever runs it (a local loop or Ray actors).

The class answers what the driver asks of an algorithm without building one (its config
section, meta-batch size, best metric, ...), so the driving code never tests algorithm names.
An algorithm object is built the same way in every process from the experiment config. Rollout
workers call `run_task` (sample a task, for MAML adapt and sample again), or the optional
`run_tasks` for several tasks at once (see `BatchedAlgorithm`); the learner calls `update` on
the results of one meta-batch (in a learner group, every learner on all of them, doing its
share; see `ShardedAlgorithm`). Weights cross processes as a flat dict of CPU
tensors, versioned by the caller. Nothing here knows about Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import gymnasium as gym
import torch

from rlmeta.rollout import Rollout

if TYPE_CHECKING:
    from rlmeta.collectives import Collective
    from rlmeta.config import ExperimentConfig, Settings
    from rlmeta.inference import Policy

Weights = dict[str, torch.Tensor]


@dataclass
class TaskSpec:
    """One unit of work for a rollout worker: a task and the seed that makes its sampling exact."""

    index: int  # position in the meta-batch; results are ordered by it
    task: Any
    seed: int


@dataclass
class TaskResult:
    """Everything sampled on one task, as plain numpy data."""

    index: int
    task: Any
    seed: int
    weights_version: int
    rollouts: list[Rollout]  # MAML: one per inner step, then the post-adaptation one; RL²: one
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. return/step_0 ... return/step_K
    env_steps: int = 0


class Algorithm(Protocol):
    """What the training loop and the distributed runtime need from MAML or RL².

    Class level (answered from the config alone): the driver, evaluation and CLI ask these.
    """

    config_section: ClassVar[str]
    """The config key holding this algorithm's settings, e.g. "maml" (`config.maml`)."""
    settings_model: ClassVar[type[Settings]]
    """The pydantic model of that section (every setting's type, range and choices)."""
    evaluation_axis: ClassVar[str]
    """The x-axis of adaptation curves, e.g. "inner gradient steps"."""

    @classmethod
    def meta_batch_size(cls, config: ExperimentConfig) -> int:
        """Tasks the driver draws per iteration."""

    @classmethod
    def best_metric(cls, config: ExperimentConfig) -> str:
        """The logged scalar that picks `best.pt` (higher is better)."""

    @classmethod
    def progress_keys(cls, config: ExperimentConfig) -> tuple[str, ...]:
        """Scalars shown on the progress bar and in the end-of-training summary."""

    @classmethod
    def tasks_per_call(cls, config: ExperimentConfig) -> int:
        """Task specs one worker call samples together (1 unless `run_tasks` is implemented)."""

    @classmethod
    def default_adapt_steps(cls, config: ExperimentConfig) -> int:
        """`adapt_steps` of `rlmeta evaluate` when none is given."""

    @classmethod
    def with_eval_actions(cls, config: ExperimentConfig, actions: str) -> ExperimentConfig:
        """The config with evaluation acting by `actions` (sample or mode); a `ValueError` for an
        algorithm whose evaluation cannot choose."""

    # Instance level: the worker's and the learner's side.

    def get_weights(self) -> Weights:
        """Current meta-parameters as CPU tensors (what the parameter server broadcasts)."""

    def set_weights(self, weights: Weights) -> None:
        """Load meta-parameters broadcast by the parameter server."""

    def run_task(
        self, envs: list[gym.Env], spec: TaskSpec, weights_version: int
    ) -> TaskResult:
        """Worker side: sample (and for MAML adapt) on one task with the current weights."""

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        """Learner side: one meta-update from a meta-batch of results; returns scalars to log."""

    def evaluate_task(
        self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int
    ) -> dict[str, float]:
        """Fast-adaptation evaluation on one task: MAML `return/step_k`, RL² `return/episode_i`."""

    def inference_policy(self, seed: int = 0) -> Policy:
        """The current weights as a policy for a plain Gymnasium loop (what `rlmeta.load`
        returns): adapting as `evaluate_task` does, its actions drawn from a stream seeded by
        `seed`, so a loop in evaluation's order of episodes and seeds gets evaluation's returns."""

    def state_dict(self) -> dict[str, Any]:
        """Weights (under "weights", as `get_weights` returns them: what `init_from` reads),
        optimiser state and anything else resume needs: tensors and plain data only."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BatchedAlgorithm(Algorithm, Protocol):
    """An `Algorithm` that can also sample several tasks in one call (RL²).

    `run_tasks` is optional: workers look for it with `getattr`, and call `run_task` per spec
    when it is missing or a call holds one spec. How many specs one call takes is fixed by the
    config alone, `Algorithm.tasks_per_call(config)`, because the driver that cuts a
    meta-batch into calls never builds an algorithm. The runtime cuts the meta-batch into
    consecutive chunks of that size in submission order, so a chunk's composition (and so what
    it samples) never depends on the number of workers.
    """

    def run_tasks(
        self, envs: list[gym.Env], specs: list[TaskSpec], weights_version: int
    ) -> list[TaskResult]:
        """Sample every spec together, the envs split between them; one result per spec, in
        order. The caller seeds the global RNGs with `specs[0].seed`; an `EnvStepError` raised
        here (set tasks with `rlmeta.rollout.set_task_on` so a rejected task is one too) fails
        the whole call."""


class ShardedAlgorithm(Algorithm, Protocol):
    """An `Algorithm` whose update can be shared by a group of learners (`learners` > 1).

    `set_collective` is optional: the runtime calls it on every learner of a group once the
    group's process group is up, and refuses a group for an algorithm without it. Every learner
    is then given all of the meta-batch's results (ordered by task index), takes its share of
    the work by `collective.rank` (e.g. a consecutive shard of the tasks,
    `rlmeta.collectives.shard_bounds`) and must take the same step as one learner doing all of
    it: every batch-wide quantity is the shares summed with `collective.sum_`, so the replicas
    stay equal. A single learner is never given a collective.
    """

    def set_collective(self, collective: Collective) -> None:
        """Sum the shares of losses, gradients and statistics with `collective` from
        the next update on."""
