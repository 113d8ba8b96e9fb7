"""Sampler throughput: env steps per second through the Ray workers versus one plain process.

`sampler_benchmark` is what `rlmeta bench` and `python -m benchmarks.sampler` call. Both
measurements step the same envs with the same MLP policy (one batched forward per step, as in
training); the only difference is Ray, so `ratio` shows what distribution costs per worker.
"""

from __future__ import annotations

import functools
import math
import random
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.distributed import worker
from rlmeta.distributed.ray_runtime import RayRuntime
from rlmeta.distributed.worker import build_envs
from rlmeta.policies import FeedForwardActor, make_policy
from rlmeta.rollout import sample_rollout
from rlmeta.tasks import make_task_env, sample_tasks, set_task


class SamplingOnlyAlgorithm:
    """The `Algorithm` protocol with sampling only: one episode per env with an MLP policy.

    `update` learns nothing; it nudges the weights so each version differs, which is all a
    broadcast measurement needs.
    """

    def __init__(self, env_id: str, device: str = "cpu",
                 env_kwargs: dict[str, Any] | None = None) -> None:
        env = make_task_env(env_id, **(env_kwargs or {}))
        self.policy = make_policy(env.observation_space, env.action_space, PolicyConfig())
        env.close()
        self.params = {k: v.detach().clone() for k, v in self.policy.named_parameters()}

    def get_weights(self) -> Weights:
        return {k: v.clone() for k, v in self.params.items()}

    def set_weights(self, weights: Weights) -> None:
        self.params = {k: v.clone() for k, v in weights.items()}

    def run_task(self, envs: list[gym.Env], spec: TaskSpec, weights_version: int) -> TaskResult:
        actor = FeedForwardActor(self.policy, self.params, torch.Generator().manual_seed(spec.seed))
        rollout = sample_rollout(envs, actor, len(envs), seed=spec.seed, task=spec.task,
                                 weights_version=weights_version)
        return TaskResult(spec.index, spec.task, spec.seed, weights_version, [rollout],
                          env_steps=rollout.num_steps)

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        self.params = {k: v + 1e-3 for k, v in self.params.items()}
        return {}

    def evaluate_task(self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int):
        return {"return": self.run_task(envs, spec, -1).rollouts[0].mean_return()}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.get_weights()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(state["params"])


def _specs(env_id: str, n: int, seed: int, env_kwargs: dict[str, Any]) -> list[TaskSpec]:
    env = make_task_env(env_id, **env_kwargs)
    tasks = sample_tasks(env, n, np.random.default_rng(seed))
    env.close()
    return [TaskSpec(i, task, seed=seed * 100_003 + i) for i, task in enumerate(tasks)]


def _bare_loop(envs: list[gym.Env], policy: Any, generator: torch.Generator,
               spec: TaskSpec) -> int:
    """One task in the bare loop: one batched forward of `policy` per step and nothing else (no
    episode bookkeeping, no checks, no Ray); returns the env steps taken."""
    for env in envs:
        set_task(env, spec.task)
    observations = [env.reset(seed=spec.seed + i)[0] for i, env in enumerate(envs)]
    live, steps = list(range(len(envs))), 0
    while live:
        with torch.no_grad():
            rows = np.array([observations[i] for i in live], dtype=np.float32)
            batch = torch.as_tensor(rows)
            actions = policy.sample(policy.distribution(batch), generator).numpy()
        still = []
        for i, action in zip(live, actions, strict=True):
            observations[i], _, terminated, truncated, _ = envs[i].step(action)
            steps += 1
            if not (terminated or truncated):
                still.append(i)
        live = still
    return steps


def _plain_process(env_id: str, envs_per_worker: int, env_kwargs: dict[str, Any]
                   ) -> tuple[SamplingOnlyAlgorithm, Any, list[gym.Env]]:
    algorithm = SamplingOnlyAlgorithm(env_id, env_kwargs=env_kwargs)
    policy = algorithm.policy
    policy.load_state_dict(algorithm.params)
    envs = build_envs(functools.partial(make_task_env, env_id, **env_kwargs), envs_per_worker)
    return algorithm, policy, envs


def _warmup_specs(env_id: str, n: int, seed: int, env_kwargs: dict[str, Any]) -> list[TaskSpec]:
    """Tasks run before timing: first MuJoCo steps, torch kernels, and every env object an env
    builds on first use of a task kind (a Meta-World env builds one MuJoCo env per env class it
    meets, 0.1-0.5 s each: `n` = the classes, whose task sampler spreads evenly over them)."""
    return _specs(env_id, n, seed + 1, env_kwargs)


def _raw_steps_per_s(env_id: str, envs_per_worker: int, specs: list[TaskSpec],
                     env_kwargs: dict[str, Any], warmup: list[TaskSpec]) -> float:
    """The machine's limit: the same envs and tasks stepped in `_bare_loop` in this process,
    with the same MLP policy."""
    _, policy, envs = _plain_process(env_id, envs_per_worker, env_kwargs)
    generator = torch.Generator().manual_seed(0)
    for spec in warmup:
        _bare_loop(envs, policy, generator, spec)
    start = time.perf_counter()
    steps = sum(_bare_loop(envs, policy, generator, spec) for spec in specs)
    elapsed = time.perf_counter() - start
    for env in envs:
        env.close()
    return steps / elapsed


def in_process_benchmark(
    env_id: str, envs_per_worker: int, tasks: int, blocks: int = 10, seed: int = 0,
    env_kwargs: dict[str, Any] | None = None, warmup_tasks: int = 1,
) -> dict[str, Any]:
    """CPU µs per env step of the bare loop and of a worker's sampling path (`sample_tasks`,
    what `RolloutWorker.run` calls) in this one process; returns one JSON-ready dict.

    The two alternate task by task in a seeded shuffled order, so a host that changes speed
    slows both alike; `tasks` tasks each, split into `blocks` blocks whose medians are reported.
    `ratio` (bare / sampler, the median over blocks) is what the sampler itself costs, without Ray.
    `env_kwargs` go to the env constructor (e.g. {"benchmark": "ML10"}); `warmup_tasks` run
    untimed first in each loop (`_warmup_specs`).
    """
    if envs_per_worker < 1 or blocks < 1 or tasks < blocks or warmup_tasks < 0:
        raise ValueError(
            f"envs_per_worker and blocks must be >= 1, tasks >= blocks and warmup_tasks >= 0, "
            f"got {envs_per_worker}, {blocks}, {tasks}, {warmup_tasks}"
        )
    env_kwargs = dict(env_kwargs or {})
    torch.set_num_threads(1)
    algorithm, policy, envs = _plain_process(env_id, envs_per_worker, env_kwargs)
    generator = torch.Generator().manual_seed(0)
    specs = _specs(env_id, tasks, seed, env_kwargs)
    runs = {
        "bare": lambda spec: _bare_loop(envs, policy, generator, spec),
        "sampler": lambda spec: worker.sample_tasks(algorithm, envs, [spec], 0)[0].env_steps,
    }
    for run in runs.values():
        for spec in _warmup_specs(env_id, warmup_tasks, seed, env_kwargs):
            run(spec)
    order = random.Random(seed)
    per_block = tasks // blocks
    cpu = {name: [0.0] * blocks for name in runs}
    steps = {name: [0] * blocks for name in runs}
    for k, spec in enumerate(specs[: per_block * blocks]):
        names = list(runs)
        order.shuffle(names)
        for name in names:
            start = time.process_time()
            steps[name][k // per_block] += runs[name](spec)
            cpu[name][k // per_block] += time.process_time() - start
    for env in envs:
        env.close()
    us = {name: [1e6 * c / n for c, n in zip(cpu[name], steps[name], strict=True)]
          for name in runs}
    ratios = [b / s for b, s in zip(us["bare"], us["sampler"], strict=True)]
    return {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "warmup_tasks": warmup_tasks,
        "envs_per_worker": envs_per_worker,
        "tasks": per_block * blocks,
        "bare_cpu_us_per_step": round(float(np.median(us["bare"])), 2),
        "sampler_cpu_us_per_step": round(float(np.median(us["sampler"])), 2),
        "ratio": round(float(np.median(ratios)), 3),
        "ratio_per_block": [round(r, 3) for r in ratios],
    }


def sampler_benchmark(
    env_id: str, workers: int, envs_per_worker: int, steps: int, seed: int = 0,
    env_kwargs: dict[str, Any] | None = None, warmup_tasks: int = 1,
) -> dict[str, Any]:
    """Measure sampling throughput; returns one JSON-ready dict.

    `steps` is the total env-step budget through the Ray workers, as whole tasks of one
    full-length episode per env (a multiple of `workers`; episodes that end early make the
    count smaller, reported as `env_steps`); the plain process samples one worker's share
    before and after the Ray run, and `raw_steps_per_s` is the mean of the two.
    Also times one weights broadcast to every worker (`broadcast_s`). `env_kwargs` go to the
    env constructor in every process. Before timing, each warm-up task (`_warmup_specs`) runs
    once in the plain process and once on every worker.
    """
    if workers < 1 or envs_per_worker < 1 or steps < 1 or warmup_tasks < 0:
        raise ValueError(
            f"workers, envs_per_worker and steps must be >= 1 and warmup_tasks >= 0, got "
            f"{workers}, {envs_per_worker}, {steps}, {warmup_tasks}"
        )
    env_kwargs = dict(env_kwargs or {})
    torch.set_num_threads(1)
    horizon = int(getattr(make_task_env(env_id, **env_kwargs).unwrapped, "horizon", 200))
    per_task = envs_per_worker * horizon
    n_tasks = workers * max(1, math.ceil(steps / (per_task * workers)))
    specs = _specs(env_id, n_tasks, seed, env_kwargs)
    warmup = _warmup_specs(env_id, warmup_tasks, seed, env_kwargs)
    # The plain-process rate drifts by a few percent over a minute on a shared host; measuring it
    # on both sides of the Ray run and averaging keeps that drift out of the ratio.
    raw_before = _raw_steps_per_s(env_id, envs_per_worker, specs[: n_tasks // workers],
                                  env_kwargs, warmup)

    config = ExperimentConfig(env=env_id, env_kwargs=env_kwargs, workers=workers,
                              envs_per_worker=envs_per_worker, device="cpu", seed=seed)
    runtime = RayRuntime(config,
                         functools.partial(SamplingOnlyAlgorithm, env_id, env_kwargs=env_kwargs),
                         functools.partial(make_task_env, env_id, **env_kwargs))
    try:
        # Actors up, then each warm-up task in a round of one per worker.
        for spec in warmup:
            runtime.collect(runtime.submit(
                [TaskSpec(i, spec.task, spec.seed + i) for i in range(workers)]))
        runtime.timings()
        start = time.perf_counter()
        results = runtime.collect(runtime.submit(specs))
        elapsed = time.perf_counter() - start
        measured = sum(r.env_steps for r in results)
        runtime.learn(results[:1])
        broadcast_s = runtime.broadcast()
    finally:
        runtime.shutdown()
    raw_after = _raw_steps_per_s(env_id, envs_per_worker, specs[: n_tasks // workers],
                                 env_kwargs, warmup)
    raw = (raw_before + raw_after) / 2
    steps_per_s = measured / elapsed
    return {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "warmup_tasks": warmup_tasks,
        "workers": workers,
        "envs_per_worker": envs_per_worker,
        "env_steps": measured,
        "steps_per_s": round(steps_per_s, 1),
        "raw_steps_per_s": round(raw, 1),
        "raw_before_after": [round(raw_before, 1), round(raw_after, 1)],
        "ratio": round(steps_per_s / (workers * raw), 3),
        "broadcast_s": round(broadcast_s, 4),
    }
