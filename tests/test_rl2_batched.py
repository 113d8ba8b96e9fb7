"""RL² sampling several tasks per worker call: `RL2Algorithm.run_tasks`, `build.tasks_per_call`
and the runtimes cutting a meta-batch into calls (LocalRuntime here; Ray in
test_distributed_ray.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_distributed_fakes import (
    FakeAlgorithm,
    make_fake_algorithm,
    make_fake_env,
    same_results,
    specs,
)
from test_rl2_algorithm import build, small_config

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.distributed import RolloutError
from rlmeta.distributed.local import LocalRuntime
from rlmeta.distributed.runtime import chunk_specs
from rlmeta.run import build as builders
from rlmeta.tasks import sample_tasks

TRIALS = 2


class SeedLog(gym.Wrapper):
    """Records the seed of every reset, to check which seed each env slot got."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


def rl2_specs(env: gym.Env, n: int, seed: int = 0) -> list[TaskSpec]:
    tasks = sample_tasks(env, n, np.random.default_rng(seed))
    return [TaskSpec(10 + i, task, seed=100 * i + 7) for i, task in enumerate(tasks)]


def test_run_tasks_gives_one_result_per_spec_with_its_slots_seeds_and_states() -> None:
    config = small_config(trials_per_task=TRIALS, episodes_per_trial=3)
    algorithm, envs = build(config, n_envs=7)  # one env more than 3 specs need: left unused
    envs = [SeedLog(env) for env in envs]
    batch = rl2_specs(envs[0], 3)
    results = algorithm.run_tasks(envs, batch, weights_version=4)

    assert [(r.index, r.seed) for r in results] == [(s.index, s.seed) for s in batch]
    for k, (result, spec) in enumerate(zip(results, batch, strict=True)):
        (rollout,) = result.rollouts
        assert result.task is spec.task and rollout.task is spec.task
        assert rollout.seed == spec.seed and result.weights_version == rollout.weights_version == 4
        assert rollout.num_sequences == TRIALS
        assert rollout.extras["initial_state"].shape == (TRIALS, config.rl2.hidden_size)
        assert result.env_steps == rollout.num_steps == TRIALS * 3  # a pull per episode
        assert set(result.metrics) >= {"return/trial", "return/episode_0", "return/episode_2"}
        for i in range(TRIALS):
            slot = envs[k * TRIALS + i]
            # The first episode of trial i resets with spec.seed + i, as in run_task.
            assert slot.seeds == [spec.seed + i, None, None]
            assert slot.unwrapped.get_task() == spec.task
    assert envs[6].seeds == []
    # The learner takes batched results like run_task's.
    assert np.isfinite(algorithm.update(results)["loss/value"])


def test_run_tasks_on_one_spec_samples_what_run_task_does() -> None:
    algorithm, envs = build(small_config(trials_per_task=TRIALS), n_envs=4)
    (spec,) = rl2_specs(envs[0], 1)
    alone = algorithm.run_task(envs, spec, 0)
    (batched,) = algorithm.run_tasks(envs, [spec], 0)
    for name in ("observations", "actions", "rewards", "log_probs", "mask"):
        assert np.array_equal(getattr(alone.rollouts[0], name), getattr(batched.rollouts[0], name))
    assert alone.metrics == batched.metrics


def test_run_tasks_needs_trials_per_task_envs_per_spec() -> None:
    algorithm, envs = build(small_config(trials_per_task=TRIALS), n_envs=5)
    with pytest.raises(ValueError, match="3 specs need 6 envs, got 5"):
        algorithm.run_tasks(envs, rl2_specs(envs[0], 3), 0)
    with pytest.raises(ValueError, match="at least one task spec"):
        algorithm.run_tasks(envs, [], 0)


def test_tasks_per_call_comes_from_the_config_alone() -> None:
    rl2 = small_config(trials_per_task=4)
    rl2.envs_per_worker = 10
    assert builders.tasks_per_call(rl2) == 2
    rl2.envs_per_worker = 3
    assert builders.tasks_per_call(rl2) == 1
    assert builders.tasks_per_call(ExperimentConfig(algorithm="maml", envs_per_worker=10)) == 1
    with pytest.raises(ValueError, match="'rl2.trials_per_task' must be > 0 and <= 10000, got 0"):
        rl2.rl2.trials_per_task = 0


def test_chunks_are_cut_in_submission_order() -> None:
    batch = specs(5)
    assert [[s.index for s in c] for c in chunk_specs(batch, 2)] == [[0, 1], [2, 3], [4]]
    assert [[s.index for s in c] for c in chunk_specs(batch[::-1], 3)] == [[4, 3, 2], [1, 0]]


# ---- LocalRuntime with the fake algorithm's run_tasks ----------------------------------------


def local(tasks_per_call: int, **overrides) -> LocalRuntime:
    config = ExperimentConfig(workers=0, envs_per_worker=2, device="cpu", **overrides)
    return LocalRuntime(config, make_fake_algorithm, make_fake_env, tasks_per_call)


def test_local_runtime_samples_chunks_together_and_single_specs_alone() -> None:
    runtime = local(2)
    results = runtime.collect(runtime.submit(specs(5)))
    algorithm: FakeAlgorithm = runtime.algorithm
    assert algorithm.batched_calls == [[0, 1], [2, 3]]  # the last chunk of one uses run_task
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    # A spec sampled first in its call or alone gets what one-task calls give; the second of a
    # call continues the first one's RNG stream, so it differs.
    single = local(1)
    alone = single.collect(single.submit(specs(5)))
    assert same_results([results[i] for i in (0, 2, 4)], [alone[i] for i in (0, 2, 4)])
    assert not np.array_equal(results[1].rollouts[0].actions, alone[1].rollouts[0].actions)
    assert runtime.timings()["env_steps"] == 5 * 3 * 4


def test_an_env_error_fails_or_drops_its_whole_chunk() -> None:
    batch = specs(4)
    batch[2] = TaskSpec(2, {"goal": 0.5, "fail_at": 1}, seed=2)
    dropping = local(2, on_env_error="drop")
    assert [r.index for r in dropping.collect(dropping.submit(batch))] == [0, 1]
    assert dropping.timings()["dropped_tasks"] == 2.0
    raising = local(2, on_env_error="raise")
    with pytest.raises(RolloutError, match=r"goal=0.500.*step 1.*tasks \[2, 3\].*together"):
        raising.collect(raising.submit(batch))
    rejected = [*specs(1), TaskSpec(1, {"speed": 1.0}, seed=1)]
    with pytest.raises(RolloutError, match=r"set_task.*tasks \[0, 1\]"):
        raising.collect(raising.submit(rejected))


def test_stale_chunks_are_resampled_whole_with_the_same_seeds() -> None:
    runtime, fresh = local(2), local(2)
    handle = runtime.submit(specs(3, seed=1))  # sampled at version 0
    runtime.learn(runtime.collect(runtime.submit(specs(2))))
    fresh.learn(fresh.collect(fresh.submit(specs(2))))
    resampled = runtime.collect(handle)
    assert [r.weights_version for r in resampled] == [1, 1, 1]
    assert same_results(resampled, fresh.collect(fresh.submit(specs(3, seed=1))))
    assert torch.equal(runtime.get_weights()["mean"], fresh.get_weights()["mean"])
