"""The driver: task sampling, the submit/collect/learn loop, logging and checkpoints.

The driver owns the task sampler's RNG (`numpy.random.default_rng(seed)`): every iteration it
draws `meta_batch_size` tasks and then one sampling seed per task from that one stream, so a
seeded run sees the same tasks whatever runs the sampling. Sync and async share one loop: async
keeps up to `max_staleness` further meta-batches sampling while the learner updates.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta import checkpoint, tasks, warm_start
from rlmeta import run_dir as run_dirs
from rlmeta.algorithm import TaskResult, TaskSpec
from rlmeta.config import ConfigError, ExperimentConfig
from rlmeta.config_io import (
    changed_keys,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from rlmeta.metrics import MetricsLogger, Progress, check_tracking
from rlmeta.run import build
from rlmeta.run.stop_signal import StopOnSigterm

CONFIG_FILE = run_dirs.CONFIG_FILE
SEED_BOUND = 2**31 - 1
_DRIVER_KEYS = ("iteration", "env_steps", "time_s")
EVAL_PREFIX = "eval/"  # held-out evaluation's scalars during training (`eval_every`)

Callback = Callable[[dict[str, Any]], bool | None]
"""Called with each iteration's logged row; returning False ends the session (see `train`)."""


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
    """The scalar that picks `best.pt`: the algorithm's answer (e.g. MAML's adapted return), on
    the held-out evaluation's tasks when `eval_every` is set, else on the training meta-batch."""
    metric = build.algorithm_of(config).best_metric(config)
    return EVAL_PREFIX + metric if config.eval_every else metric


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
    callbacks: Sequence[Callback] = (),
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> dict[str, Any]:
    """Train per `config`, writing config, metrics and checkpoints to `run_dir`.

    The run owns `run_dir` while it runs (`rlmeta.run_dir.claim`): a second writer is refused,
    and a new run refuses a directory that is not empty unless `overwrite` (which deletes an
    earlier run's files there). `resume=True` continues from the newest checkpoint in `run_dir`
    exactly where it stopped; `config` must be the checkpoint's (and config.yaml's), or differ
    only with `allow_config_change` (config.yaml then shows the config the run continues with).
    `stop_after` ends this session (with a checkpoint) after that many iterations, as a job's
    time slot would; `rlmeta resume` continues it. A new run with `config.init_from` starts from
    that checkpoint's policy weights (`rlmeta.warm_start`). Each of `callbacks` is called with
    every iteration's logged row, before that iteration's checkpoint is written; one returning
    False ends the session there, with a checkpoint, as `stop_after` would; so does SIGTERM
    (`rlmeta.run.stop_signal`). Returns the last metrics row plus the run dir and
    `stopped_by_sigterm`.
    """
    run_dir = Path(run_dir)
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    # A tracker that cannot start, then the env: both fail before the run dir is written.
    check_tracking(config.tracking)
    env = build.build_env(config)
    runtime = lock = None
    try:
        # Resume carries the weights in its checkpoint: init_from matters only to a new run.
        initial = None if resume or config.init_from is None else (
            warm_start.read_initial_weights(config.init_from, config.algorithm))
        lock = run_dirs.claim(run_dir, resume=resume, overwrite=overwrite)
        state = _restore(config, run_dir, allow_config_change) if resume else _start(config)
        runtime = build.make_runtime(config, env.observation_space, env.action_space)
        if resume:
            runtime.load_state_dict(state["runtime"])
            torch.set_rng_state(state["torch_rng_state"])
        else:
            if initial is not None:
                runtime.load_state_dict(
                    warm_start.with_initial_weights(runtime.state_dict(), initial))
                state[warm_start.RECORD_KEY] = initial.record
        if not resume or not (run_dir / CONFIG_FILE).exists() or allow_config_change:
            # Written once the run can start, so a run that cannot leaves nothing behind.
            save_config(config, run_dir / CONFIG_FILE)
        sigterm = StopOnSigterm()  # a callback, listening from when the loop starts
        driver = _Driver(config, run_dir, runtime, env, state, (*callbacks, sigterm))
    except BaseException:
        if runtime is not None:
            runtime.shutdown()
        env.close()
        if lock is not None:
            lock.release(discard=True)
        raise
    try:
        end = config.iterations if stop_after is None else state["iteration"] + stop_after
        end = min(end, config.iterations)
        with sigterm:
            summary = driver.run(end)
        return {**summary, "stopped_by_sigterm": sigterm.requested and driver.completed < end}
    finally:
        try:
            driver.close()
        finally:
            lock.release()


def resume_config(run_dir: str | Path, state: dict[str, Any]) -> ExperimentConfig:
    """What `rlmeta resume` continues with: the run directory's config.yaml (a user may have
    edited it: `check_resume` says what differs), or the checkpoint's config when the file is
    gone."""
    path = Path(run_dir) / CONFIG_FILE
    return load_config(path) if path.exists() else _saved_config(state, path)


def check_resume(
    config: ExperimentConfig, state: dict[str, Any], path: Path, allow_config_change: bool
) -> list[str]:
    """The dotted keys in which `config` differs from the config of checkpoint `state` (read
    from `path`). A checkpoint of another algorithm or env is refused; other differences are
    refused unless `allow_config_change`."""
    current = config_to_dict(config)
    checkpoint.check_belongs(state, path, current, f"the config to resume with ({CONFIG_FILE})")
    changed = changed_keys(config_to_dict(_saved_config(state, path)), current)
    if changed and not allow_config_change:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8
                                          else "")
        raise ValueError(
            f"config differs from the one {str(path.parent.parent)!r} was trained with (keys: "
            f"{shown}); resume continues a run unchanged: restore {CONFIG_FILE}, or pass "
            f"--allow-config-change to continue with its values"
        )
    return changed


def _saved_config(state: dict[str, Any], path: Path) -> ExperimentConfig:
    try:
        return config_from_dict(state["config"])
    except ConfigError as error:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} holds a config this rlmeta does not accept: {error}"
        ) from None


def _start(config: ExperimentConfig) -> dict[str, Any]:
    # The learner's own randomness (e.g. minibatch order) draws from torch's global RNG.
    torch.manual_seed(config.seed)
    return {
        "iteration": 0,
        "env_steps": 0,
        "time_s": 0.0,
        "best_score": None,
        "rng_state": np.random.default_rng(config.seed).bit_generator.state,
    }


def _restore(
    config: ExperimentConfig, run_dir: Path, allow_config_change: bool
) -> dict[str, Any]:
    path = checkpoint.latest_checkpoint(run_dir)
    state = checkpoint.load_checkpoint(path)
    check_resume(config, state, path, allow_config_change)
    file = run_dir / CONFIG_FILE
    if file.exists() and not allow_config_change:
        # The file shows what the run uses: one edited since is not passed over in silence.
        differ = changed_keys(config_to_dict(load_config(file)), config_to_dict(config))
        if differ:
            raise ValueError(
                f"{str(file)!r} differs from the config to resume with (keys: "
                f"{', '.join(differ[:8])}); resume with the file's config or pass "
                f"--allow-config-change"
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
        callbacks: tuple[Callback, ...] = (),
    ) -> None:
        self.config, self.run_dir, self.runtime, self.env = config, run_dir, runtime, env
        self.callbacks = callbacks
        self.evaluation: Any = None  # the held-out evaluation, built at its first use
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
            scalars = self._learn(results, start)
            self.completed += 1
            if self.config.eval_every and self.completed % self.config.eval_every == 0:
                scalars.update(self._held_out_evaluation())
            row = self.logger.log(scalars)
            self.progress.update(row)
            # Every callback sees the row, whichever of them asks to stop.
            stop = [callback(row) for callback in self.callbacks].count(False) > 0
            self._save(row, self.completed if stop else end)
            if stop:
                break
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
        return {
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

    def _held_out_evaluation(self) -> dict[str, float]:
        """`rlmeta evaluate`'s fast-adaptation evaluation of the current weights on the run's
        held-out tasks, as `eval/*` means over tasks."""
        from rlmeta.run.evaluation import HeldOutEvaluation  # it builds on this module

        if self.evaluation is None:
            self.evaluation = HeldOutEvaluation(self.config, self.runtime)
        return {EVAL_PREFIX + key: value for key, value in self.evaluation.run().items()}

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
        if self.evaluation is not None:
            self.evaluation.close()
        self.progress.close()
        self.logger.close()
        self.runtime.shutdown()
        self.env.close()
