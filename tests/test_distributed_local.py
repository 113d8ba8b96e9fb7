"""LocalRuntime: the single-process runtime, with the fake algorithm and env."""

from __future__ import annotations

import pytest
import torch
from test_distributed_fakes import (
    FakeAlgorithm,
    make_fake_algorithm,
    make_fake_env,
    same_results,
    specs,
)

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.distributed import RolloutError, make_runtime
from rlmeta.distributed.local import LocalRuntime


def local(**overrides) -> LocalRuntime:
    config = ExperimentConfig(workers=0, envs_per_worker=2, device="cpu", **overrides)
    runtime = make_runtime(config, make_fake_algorithm, make_fake_env)
    assert isinstance(runtime, LocalRuntime)
    return runtime


def test_sync_loop_orders_results_versions_weights_and_reports_timings() -> None:
    runtime = local()
    batch = specs(4)
    results = runtime.collect(runtime.submit(list(reversed(batch))))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert all(r.weights_version == 0 for r in results)
    metrics = runtime.learn(results)
    assert metrics["weights_version"] == 1.0 and metrics["staleness"] == 0.0
    assert runtime.weights_version == 1
    assert float(runtime.get_weights()["mean"][0]) == 0.25
    timings = runtime.timings()
    assert timings["env_steps"] == 4 * 3 * 4 and timings["learner_s"] > 0.0
    assert runtime.timings()["env_steps"] == 0.0  # reset on read


def test_same_seeds_give_the_same_episodes_across_runtimes() -> None:
    first, second = local(), local()
    second.collect(second.submit(specs(2, seed=7)))  # other work first must not matter
    batch = specs(3)
    assert same_results(first.collect(first.submit(batch)), second.collect(second.submit(batch)))


def test_async_submit_before_learn_reports_staleness_and_sync_resamples() -> None:
    runtime = local(mode="async", max_staleness=1)
    first = runtime.collect(runtime.submit(specs(2)))
    handle = runtime.submit(specs(2, seed=1))  # sampled with version 0
    runtime.learn(first)
    results = runtime.collect(handle)
    assert all(r.weights_version == 0 for r in results)
    assert runtime.learn(results)["staleness"] == 1.0

    sync = local(mode="sync")
    first = sync.collect(sync.submit(specs(2)))
    handle = sync.submit(specs(2, seed=1))
    sync.learn(first)
    assert all(r.weights_version == 1 for r in sync.collect(handle))


def test_env_errors_raise_with_env_task_and_step_or_are_dropped_and_counted() -> None:
    batch = specs(3)
    batch[1] = TaskSpec(1, {"goal": 0.5, "fail_at": 1}, seed=1)
    raising = local(on_env_error="raise")
    with pytest.raises(RolloutError, match=r"FakeTaskEnv.*goal=0.500.*step 1"):
        raising.collect(raising.submit(batch))
    dropping = local(on_env_error="drop")
    results = dropping.collect(dropping.submit(batch))
    assert [r.index for r in results] == [0, 2]
    assert dropping.timings()["dropped_tasks"] == 1.0


def test_evaluate_with_given_weights_leaves_the_current_ones() -> None:
    runtime = local()
    runtime.learn(runtime.collect(runtime.submit(specs(2))))
    current = runtime.evaluate(specs(2), adapt_steps=1)
    other = runtime.evaluate(specs(2), adapt_steps=1, weights={"mean": torch.tensor([2.0])})
    assert [m["mean"] for m in current] == [0.25, 0.25]
    assert [m["mean"] for m in other] == [2.0, 2.0]
    assert float(runtime.get_weights()["mean"][0]) == 0.25


def test_state_dict_round_trip_restores_learner_and_version() -> None:
    runtime = local()
    for _ in range(2):
        runtime.learn(runtime.collect(runtime.submit(specs(2))))
    state = runtime.state_dict()
    assert state["weights_version"] == 2
    restored = local()
    restored.load_state_dict(state)
    assert restored.weights_version == 2
    assert isinstance(restored.algorithm, FakeAlgorithm) and restored.algorithm.updates == 2
    results = restored.collect(restored.submit(specs(1)))
    assert results[0].weights_version == 2


def test_computes_with_the_learners_threads() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        local(learner_cpus=1)
        assert torch.get_num_threads() == 1
        local(learner_cpus=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bad_runtime_settings_are_named() -> None:
    with pytest.raises(ValueError, match="'mode' must be one of sync, async"):
        local(mode="eventually")
    with pytest.raises(ValueError, match="'on_env_error' must be one of raise, drop"):
        local(on_env_error="ignore")
    with pytest.raises(RuntimeError, match="cluster has no GPU"):
        make_runtime(ExperimentConfig(workers=0, device="cuda"), make_fake_algorithm,
                     make_fake_env)
    runtime = local()
    with pytest.raises(ValueError, match="indices must be unique"):
        runtime.submit([TaskSpec(0, {"goal": 0.0}, 1), TaskSpec(0, {"goal": 1.0}, 2)])
