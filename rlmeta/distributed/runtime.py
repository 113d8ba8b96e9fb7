"""The interface the training loop drives, and the rules both runtimes share.

`LocalRuntime` (config.workers == 0) samples and learns in one process with one algorithm object;
`RayRuntime` spreads tasks over rollout worker actors and learns in a learner actor
(`rlmeta.distributed.make_runtime` picks one). Both apply the same rules, defined here once: a
meta-batch cut into calls of up to `tasks_per_call` specs in submission order (so what a call
samples never depends on the number of workers), results ordered by task index, results older than
the staleness bound resampled a whole call at a time, env errors raised or dropped as configured
(an env error in a call of several specs fails, and drops, all of them).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.config import ExperimentConfig
from rlmeta.distributed.errors import RolloutError, TaskFailure

TIMING_KEYS = (
    "sampling_s",
    "learner_s",
    "waiting_s",
    "broadcast_s",
    "env_steps",
    "dropped_tasks",
    "restarted_workers",
)

_handle_ids = itertools.count()


@dataclass
class SampleHandle:
    """A submitted meta-batch; pass it back to `collect`."""

    specs: list[TaskSpec]
    weights_version: int  # newest version when submitted
    id: int = field(default_factory=lambda: next(_handle_ids))
    pending: Any = None  # the runtime's own bookkeeping


class Runtime(Protocol):
    """Sampling, learning and weight broadcast as the training loop sees them."""

    @property
    def weights_version(self) -> int: ...

    def submit(self, specs: list[TaskSpec]) -> SampleHandle:
        """Start sampling these tasks with the newest published weights; returns at once."""

    def collect(self, handle: SampleHandle) -> list[TaskResult]:
        """Wait; results ordered by spec.index, dropped tasks left out (counted in timings)."""

    def learn(self, results: list[TaskResult]) -> dict[str, float]:
        """One algorithm.update, then publish version + 1; adds weights_version and staleness."""

    def evaluate(
        self, specs: list[TaskSpec], adapt_steps: int, weights: Weights | None = None
    ) -> list[dict[str, float]]:
        """algorithm.evaluate_task per spec, with the current weights or the given ones."""

    def get_weights(self) -> Weights: ...

    def state_dict(self) -> dict:
        """{"algorithm": learner algorithm.state_dict(), "weights_version": v}."""

    def load_state_dict(self, state: dict) -> None:
        """Restore the learner and republish its weights at the saved version."""

    def timings(self) -> dict[str, float]:
        """Seconds and counts accumulated since the last call (keys: TIMING_KEYS)."""

    def shutdown(self) -> None: ...


class Timings:
    """Accumulates the numbers `Runtime.timings` reports, reset on each read."""

    def __init__(self) -> None:
        self._values: dict[str, float] = defaultdict(float)

    def add(self, key: str, amount: float) -> None:
        if key not in TIMING_KEYS:
            raise KeyError(f"unknown timing {key!r}; expected one of {', '.join(TIMING_KEYS)}")
        self._values[key] += amount

    def pop(self) -> dict[str, float]:
        values = {key: float(self._values.get(key, 0.0)) for key in TIMING_KEYS}
        self._values.clear()
        return values


def staleness_bound(config: ExperimentConfig) -> int:
    """Versions a result may lag the current weights: 0 in sync mode, max_staleness in async."""
    return 0 if config.mode == "sync" else config.max_staleness


def check_specs(specs: list[TaskSpec]) -> None:
    indices = [spec.index for spec in specs]
    if len(set(indices)) != len(indices):
        raise ValueError(f"task spec indices must be unique, got {indices}")


def check_tasks_per_call(tasks_per_call: int) -> int:
    """How many specs one worker call samples (the driver takes it from the algorithm)."""
    if type(tasks_per_call) is not int or tasks_per_call < 1:
        raise ValueError(f"tasks_per_call must be an int >= 1, got {tasks_per_call!r}")
    return tasks_per_call


def chunk_specs(specs: list[TaskSpec], size: int) -> list[list[TaskSpec]]:
    """Consecutive calls of up to `size` specs, in submission order.

    Specs sampled in one call share an RNG stream (`Algorithm.run_tasks`), so the cut depends
    only on the specs and `size`: sync mode stays seed-exact for any number of workers.
    """
    return [specs[i : i + size] for i in range(0, len(specs), size)]


def stale_chunks(
    chunks: list[list[TaskSpec]], outcomes: dict[int, Any], current_version: int, bound: int
) -> list[list[TaskSpec]]:
    """The chunks holding a result older than the bound; resampled whole so each chunk is
    sampled again with the specs it was first sampled with."""
    return [
        chunk for chunk in chunks
        if any(isinstance(outcomes[spec.index], TaskResult)
               and is_stale(outcomes[spec.index], current_version, bound) for spec in chunk)
    ]


def is_stale(result: TaskResult, current_version: int, bound: int) -> bool:
    return current_version - result.weights_version > bound


def handle_failure(failure: TaskFailure, on_env_error: str, timings: Timings) -> None:
    """Raise for `raise` (and for fatal failures); count the dropped task for `drop`."""
    if failure.fatal or on_env_error == "raise":
        raise RolloutError(failure.message)
    timings.add("dropped_tasks", 1)


def evaluation_metrics(outcome: dict[str, float] | TaskFailure) -> dict[str, float]:
    """Evaluation has nothing to drop a task in favour of: an env error always stops it."""
    if isinstance(outcome, TaskFailure):
        raise RolloutError(outcome.message)
    return outcome


def order_results(results: dict[int, TaskResult]) -> list[TaskResult]:
    return [results[index] for index in sorted(results)]


def learn_metrics(
    metrics: dict[str, float], results: list[TaskResult], version_at_update: int
) -> dict[str, float]:
    """Add the new weights version and the staleness of the meta-batch to update's metrics."""
    staleness = max((version_at_update - r.weights_version for r in results), default=0)
    return {
        **metrics,
        "weights_version": float(version_at_update + 1),
        "staleness": float(staleness),
    }
