"""The driver: task sampling, the submit/collect/learn loop, logging and checkpoints.

The driver owns the task sampler's RNG (`numpy.random.default_rng(seed)`): every iteration it
draws `meta_batch_size` tasks and then one sampling seed per task from that one stream, so a
seeded run sees the same tasks whatever runs the sampling. Sync and async share one loop: async
keeps up to `max_staleness` further meta-batches sampling while the learner updates.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta import checkpoint, tasks, warm_start
from rlmeta.algorithm import TaskResult, TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.config_io import config_from_dict, config_to_dict, save_config
from rlmeta.metrics import MetricsLogger, Progress, check_tracking
from rlmeta.run import build

CONFIG_FILE = "config.yaml"
SEED_BOUND = 2**31 - 1
_DRIVER_KEYS = ("iteration", "env_steps", "time_s")


def draw_task_specs(env: gym.Env, count: int, rng: np.random.Generator) -> list[TaskSpec]:
    """`count` tasks, then one sampling seed per task, both from `rng` (in that order)."""
    drawn = tasks.sample_tasks(env, count, rng)
    seeds = rng.integers(0, SEED_BOUND, size=count)
    return [
        TaskSpec(index=i, task=task, seed=int(seed))
        for i, (task, seed) in enumerate(zip(drawn, seeds, strict=True))
    ]


def meta_batch_size(config: ExperimentConfig) -> int:
    """Tasks drawn per iteration (the algorithm's answer)."""
    return build.algorithm_of(config).meta_batch_size(config)


def best_metric(config: ExperimentConfig) -> str:
    """The scalar that picks `best.pt` (the algorithm's answer, e.g. MAML's adapted return)."""
    return build.algorithm_of(config).best_metric(config)


def progress_keys(config: ExperimentConfig) -> tuple[str, ...]:
    """Scalars shown while training and in the summary (the algorithm's answer)."""
    return build.algorithm_of(config).progress_keys(config)


def mean_task_metrics(results: list[TaskResult]) -> dict[str, float]:
    """Per-task metrics (e.g. return/step_k) averaged over the meta-batch."""
    keys = sorted({key for result in results for key in result.metrics})
    return {
        key: float(np.mean([r.metrics[key] for r in results if key in r.metrics])) for key in keys
    }


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train per `config`, writing config, metrics and checkpoints to `run_dir`.

    `resume=True` continues from the newest checkpoint in `run_dir` exactly where it stopped.
    `stop_after` ends this session (with a checkpoint) after that many iterations, as a job's
    time slot would; `rlmeta resume` continues it. A new run with `config.init_from` starts from
    that checkpoint's policy weights (`rlmeta.warm_start`). Returns the last metrics row plus the
    run dir.
    """
    run_dir = Path(run_dir)
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    # A tracker that cannot start, then the env: both fail before the run dir is written.
    check_tracking(config.tracking)
    env = build.build_env(config)
    runtime = None
    try:
        # Resume carries the weights in its checkpoint: init_from matters only to a new run.
        initial = None if resume or config.init_from is None else (
            warm_start.read_initial_weights(config.init_from, config.algorithm))
        state = _restore(config, run_dir) if resume else _start(config, run_dir)
        runtime = build.make_runtime(config, env.observation_space, env.action_space)
        if resume:
            runtime.load_state_dict(state["runtime"])
            torch.set_rng_state(state["torch_rng_state"])
        else:
            if initial is not None:
                runtime.load_state_dict(
                    warm_start.with_initial_weights(runtime.state_dict(), initial))
                state[warm_start.RECORD_KEY] = initial.record
            # Written once the run can start, so a run that cannot leaves nothing behind.
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / CONFIG_FILE)
        driver = _Driver(config, run_dir, runtime, env, state)
    except BaseException:
        if runtime is not None:
            runtime.shutdown()
        env.close()
        raise
    try:
        end = config.iterations if stop_after is None else state["iteration"] + stop_after
        return driver.run(min(end, config.iterations))
    finally:
        driver.close()


def _start(config: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    if checkpoint.list_checkpoints(run_dir):
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already has checkpoints; continue it with "
            f"`rlmeta resume {run_dir}` or choose another --run-dir"
        )
    # The learner's own randomness (e.g. minibatch order) draws from torch's global RNG.
    torch.manual_seed(config.seed)
    return {
        "iteration": 0,
        "env_steps": 0,
        "time_s": 0.0,
        "best_score": None,
        "rng_state": np.random.default_rng(config.seed).bit_generator.state,
    }


def _restore(config: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))
    saved = config_from_dict(state["config"])
    if saved != config:
        current, before = config_to_dict(config), config_to_dict(saved)
        changed = sorted(key for key in current if current[key] != before.get(key))
        raise ValueError(
            f"config differs from the one {str(run_dir)!r} was trained with (keys: "
            f"{', '.join(changed)}); resume continues a run unchanged"
        )
    return state


class _Driver:
    """The loop's state between iterations: what a checkpoint saves and resume restores."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: Path,
        runtime: Any,
        env: gym.Env,
        state: dict[str, Any],
    ) -> None:
        self.config, self.run_dir, self.runtime, self.env = config, run_dir, runtime, env
        self.completed: int = state["iteration"]
        self.env_steps: int = state["env_steps"]
        self.best_score: float | None = state["best_score"]
        self.init_from: dict[str, Any] | None = state.get(warm_start.RECORD_KEY)
        self.rng = np.random.default_rng(config.seed)
        self.rng.bit_generator.state = state["rng_state"]
        # (handle, task-RNG state before that batch was drawn): resume redraws unlearned batches.
        self.in_flight: deque[tuple[Any, dict[str, Any]]] = deque()
        self.elapsed_before = state["time_s"]
        self.clock = time.perf_counter()
        self.logger = MetricsLogger(
            run_dir, start_iteration=self.completed, start_env_steps=self.env_steps,
            config=config_to_dict(config), hparam_metrics=progress_keys(config),
            tracking=config.tracking,
        )
        self.progress = Progress(
            config.iterations, initial=self.completed, show_keys=progress_keys(config),
            every=config.log_every,
        )

    def run(self, end: int) -> dict[str, Any]:
        """Iterate until `end` completed iterations; returns the last metrics row."""
        # Sync keeps nothing in flight across learn; async keeps up to max_staleness batches.
        depth = 0 if self.config.mode == "sync" else self.config.max_staleness
        submitted = self.completed
        row: dict[str, Any] = {}
        self.runtime.timings()  # per-iteration counters start from zero
        while self.completed < end:
            start = time.perf_counter()
            if not self.in_flight:
                self._submit()
                submitted += 1
            results = self.runtime.collect(self.in_flight.popleft()[0])
            while len(self.in_flight) < depth and submitted < end:
                self._submit()
                submitted += 1
            row = self._learn(results, start)
            self.completed += 1
            self._save(row, end)
        return {**row, "run_dir": str(self.run_dir), "best_score": self.best_score}

    def _submit(self) -> None:
        rng_state = self.rng.bit_generator.state
        specs = draw_task_specs(self.env, meta_batch_size(self.config), self.rng)
        self.in_flight.append((self.runtime.submit(specs), rng_state))

    def _learn(self, results: list[TaskResult], start: float) -> dict[str, Any]:
        if not results:
            raise RuntimeError(
                f"iteration {self.completed}: every task of the meta-batch was dropped for "
                f"env errors"
            )
        learned = self.runtime.learn(results)
        self.env_steps += sum(int(result.env_steps) for result in results)
        task_metrics = mean_task_metrics(results)
        timings = self.runtime.timings()
        iteration_s = time.perf_counter() - start
        row = self.logger.log(
            {
                "iteration": self.completed,
                "env_steps": self.env_steps,
                "time_s": self.elapsed_before + time.perf_counter() - self.clock,
                **task_metrics,
                # The driver's own counters above are cumulative; an algorithm cannot shadow them.
                **{k: v for k, v in learned.items() if k not in _DRIVER_KEYS},
                "weights_version": learned.get("weights_version", self.runtime.weights_version),
                "staleness": learned.get("staleness", 0.0),
                "env_steps_per_s": timings["env_steps"] / max(iteration_s, 1e-9),
                "iteration_s": iteration_s,
                **{f"runtime/{key}": value for key, value in timings.items()},
            }
        )
        self.progress.update(row)
        return row

    def _save(self, row: dict[str, Any], end: int) -> None:
        score = row.get(best_metric(self.config))
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = score
            # best.pt holds the weights after the update on the best-scoring meta-batch.
            checkpoint.save_checkpoint(self._snapshot(row), checkpoint.best_path(self.run_dir))
        if self.completed % self.config.checkpoint_every == 0 or self.completed == end:
            path = checkpoint.checkpoint_path(self.run_dir, self.completed)
            checkpoint.save_checkpoint(self._snapshot(row), path)
            checkpoint.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)

    def _snapshot(self, row: dict[str, Any]) -> dict[str, Any]:
        rng_state = self.in_flight[0][1] if self.in_flight else self.rng.bit_generator.state
        return checkpoint.make_checkpoint(
            config_to_dict(self.config),
            self.runtime.state_dict(),
            self.completed,
            self.env_steps,
            rng_state,
            extra={
                "time_s": row["time_s"],
                "best_score": self.best_score,
                "torch_rng_state": torch.get_rng_state(),
                warm_start.RECORD_KEY: self.init_from,
            },
        )

    def close(self) -> None:
        self.progress.close()
        self.logger.close()
        self.runtime.shutdown()
        self.env.close()
