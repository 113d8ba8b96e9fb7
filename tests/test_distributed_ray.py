"""RayRuntime on one local Ray instance (3 logical CPUs: a learner and two workers).

Actor start-up dominates these tests, so most of them share one runtime and set the config
fields they exercise; the fault tests run last because they kill its workers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray
import test_distributed_fakes as fakes
import torch
from ray import cloudpickle
from test_distributed_fakes import make_broken_env, make_fake_algorithm, make_fake_env, specs

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.distributed import RolloutError, make_runtime, ray_runtime
from rlmeta.distributed.benchmark import sampler_benchmark
from rlmeta.distributed.local import LocalRuntime
from rlmeta.distributed.ray_runtime import RayRuntime, start_local_ray
from rlmeta.maml.config import MAMLConfig
from rlmeta.rl2.config import RL2Config
from rlmeta.run import build
from rlmeta.run.train import draw_task_specs

pytestmark = pytest.mark.ray


def config(**overrides) -> ExperimentConfig:
    values = {"workers": 2, "envs_per_worker": 2, "device": "cpu", **overrides}
    return ExperimentConfig(**values)


@pytest.fixture(scope="module")
def ray_instance():
    torch.set_num_threads(1)
    # The fakes live in the tests folder, which worker processes cannot import.
    cloudpickle.register_pickle_by_value(fakes)
    start_local_ray(3)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(fakes)


@pytest.fixture(scope="module")
def shared(ray_instance):
    runtime = make_runtime(config(), make_fake_algorithm, make_fake_env)
    assert isinstance(runtime, RayRuntime)
    # Wait for the actors, so a kill lands mid-task rather than mid-start.
    ray.get([worker.ready.remote() for worker in runtime.workers])
    yield runtime
    runtime.shutdown()


@pytest.fixture
def runtime(shared: RayRuntime):
    shared.config = config()
    shared.tasks_per_call = 1
    # A worker killed by an earlier test may still be restarting; each test starts with all up.
    assert shared.wait_for_workers() == len(shared.workers)
    shared.timings()
    return shared


def iterate(runtime, iterations: int = 2, n_tasks: int = 5) -> list:
    per_iteration = []
    for i in range(iterations):
        results = runtime.collect(runtime.submit(specs(n_tasks, seed=i)))
        runtime.learn(results)
        per_iteration.append(results)
    return per_iteration


def test_unbuildable_envs_stop_the_run_with_the_reason(ray_instance) -> None:
    # Runs before the shared runtime exists: the instance has CPUs for one runtime at a time.
    broken = make_runtime(config(workers=1, on_env_error="drop"), make_fake_algorithm,
                          make_broken_env)
    try:
        with pytest.raises(RolloutError, match="could not build its envs.*no display"):
            broken.collect(broken.submit(specs(2)))
    finally:
        broken.shutdown()


def test_learner_reserves_learner_cpus_and_computes_with_as_many_threads(ray_instance) -> None:
    # Also before the shared runtime: 1 worker + a 2-CPU learner fill the 3-CPU instance.
    runtime = make_runtime(config(workers=1, learner_cpus=2), make_fake_algorithm, make_fake_env)
    try:
        ray.get(runtime.workers[0].ready.remote())
        threads = ray.get(runtime.learner.__ray_call__.remote(lambda _: torch.get_num_threads()))
        assert threads == 2
        # The cluster's resource view is refreshed on a timer: poll it briefly.
        deadline = time.monotonic() + 10
        while ray.available_resources().get("CPU", 0.0) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ray.available_resources().get("CPU", 0.0) == 0.0
    finally:
        runtime.shutdown()


def one_iteration(cfg: ExperimentConfig, batch: list, workers: int) -> tuple[list, dict]:
    """Sample `batch` and learn once with the real algorithm on `workers` (0: no Ray)."""
    cfg.workers = workers
    runtime = build.make_runtime(cfg)
    try:
        assert runtime.tasks_per_call == build.tasks_per_call(cfg)
        results = runtime.collect(runtime.submit(batch))
        return results, runtime.learn(results)
    finally:
        runtime.shutdown()


def test_real_maml_on_one_worker_matches_the_local_runtime(ray_instance) -> None:
    # Also before the shared runtime exists. Tiny Navigation2D budget: a smoke test of the real
    # algorithm through the workers and the learner actor, compared with one process.
    cfg = ExperimentConfig(
        algorithm="maml", env="rlmeta/Navigation2D-v0", envs_per_worker=2, device="cpu",
        maml=MAMLConfig(meta_batch_size=2, episodes_per_task=2),
        policy=PolicyConfig(hidden_sizes=[16]),
    )
    env = build.build_env(cfg)
    batch = draw_task_specs(env, 2, np.random.default_rng(0))

    local_results, local_metrics = one_iteration(cfg, batch, 0)
    ray_results, ray_metrics = one_iteration(cfg, batch, 1)
    assert len(ray_results[0].rollouts) == cfg.maml.inner_steps + 1
    for a, b in zip(local_results, ray_results, strict=True):
        for x, y in zip(a.rollouts, b.rollouts, strict=True):
            assert np.array_equal(x.actions, y.actions) and np.array_equal(x.rewards, y.rewards)
    assert ray_metrics["weights_version"] == 1.0
    assert ray_metrics == pytest.approx(local_metrics, rel=1e-5, abs=1e-6)


def test_real_rl2_chunks_give_the_same_results_on_one_two_and_no_workers(ray_instance) -> None:
    # Also before the shared runtime exists. 4 envs / 2 trials: calls of 2 tasks, [0, 1], [2, 3]
    # and [4] alone; what a call samples must not depend on which or how many workers run it.
    cfg = ExperimentConfig(
        algorithm="rl2", env="rlmeta/Bandit-v0", env_kwargs={"arms": 3}, envs_per_worker=4,
        device="cpu", policy=PolicyConfig(hidden_sizes=[]),
        rl2=RL2Config(meta_batch_size=5, trials_per_task=2, episodes_per_trial=3, hidden_size=8),
    )
    assert build.tasks_per_call(cfg) == 2
    env = build.build_env(cfg)
    batch = draw_task_specs(env, 5, np.random.default_rng(0))

    local_results, local_metrics = one_iteration(cfg, batch, 0)
    for workers in (1, 2):
        ray_results, ray_metrics = one_iteration(cfg, batch, workers)
        assert [r.index for r in ray_results] == [0, 1, 2, 3, 4]
        for a, b in zip(local_results, ray_results, strict=True):
            (x,), (y,) = a.rollouts, b.rollouts
            assert np.array_equal(x.actions, y.actions) and np.array_equal(x.rewards, y.rewards)
            assert np.array_equal(x.extras["initial_state"], y.extras["initial_state"])
        assert ray_metrics == pytest.approx(local_metrics, rel=1e-5, abs=1e-6)


def test_sampler_benchmark_reports_both_throughputs(ray_instance) -> None:
    # Also before the shared runtime exists.
    row = sampler_benchmark("rlmeta/Navigation2D-v0", workers=1, envs_per_worker=2, steps=300)
    assert row["workers"] == 1 and row["env_steps"] > 0
    assert row["steps_per_s"] > 0 and row["raw_steps_per_s"] > 0
    # The ratio is rounded to 3 decimals: on a loaded host it can be small enough (0.04) that the
    # rounding alone is more than 1% of it, so the tolerance is absolute.
    assert row["ratio"] == pytest.approx(row["steps_per_s"] / row["raw_steps_per_s"], abs=1e-3)
    assert row["broadcast_s"] > 0


def test_two_workers_sample_and_learn_what_the_local_runtime_does(runtime: RayRuntime) -> None:
    local = make_runtime(config(workers=0), make_fake_algorithm, make_fake_env)
    runtime.load_state_dict(local.state_dict())  # back to version 0 with fresh weights
    two = iterate(runtime)
    for a, b in zip(iterate(local), two, strict=True):
        assert fakes.same_results(a, b)
    assert [r.weights_version for r in two[1]] == [1] * 5
    assert torch.equal(runtime.get_weights()["mean"], local.get_weights()["mean"])
    assert runtime.timings()["env_steps"] == 2 * 5 * fakes.SEQUENCES * fakes.HORIZON


def test_workers_fetch_each_version_once_however_many_tasks_they_run(runtime: RayRuntime) -> None:
    def fetches() -> list[int]:
        return ray.get([worker.weights_fetches.remote() for worker in runtime.workers])

    runtime.broadcast()
    before = fetches()
    results = runtime.collect(runtime.submit(specs(6)))  # at least 2 tasks per worker
    assert fetches() == before and {r.weights_version for r in results} == {runtime.weights_version}
    runtime.learn(results)
    runtime.collect(runtime.submit(specs(6)))
    grown = [after - was for after, was in zip(fetches(), before, strict=True)]
    assert max(grown) == 1  # the new version, once per worker that ran a task


def test_env_errors_raise_or_are_dropped_and_counted(runtime: RayRuntime) -> None:
    batch = specs(3)
    batch[2] = TaskSpec(2, {"goal": -1.0, "fail_at": 3}, seed=2)
    runtime.config.on_env_error = "drop"
    assert [r.index for r in runtime.collect(runtime.submit(batch))] == [0, 1]
    assert runtime.timings()["dropped_tasks"] == 1.0
    runtime.config.on_env_error = "raise"
    with pytest.raises(RolloutError, match=r"FakeTaskEnv.*goal=-1.000.*step 3"):
        runtime.collect(runtime.submit(batch))
    with pytest.raises(RolloutError, match=r"FakeTaskEnv.*step 3"):
        runtime.evaluate(batch, adapt_steps=1)


def test_async_staleness_is_reported_and_bounded(runtime: RayRuntime) -> None:
    runtime.config.mode, runtime.config.max_staleness = "async", 1
    start = runtime.weights_version
    first = runtime.collect(runtime.submit(specs(4)))
    ahead = runtime.collect(runtime.submit(specs(4, seed=1)))  # sampled before the learn
    assert runtime.learn(first)["weights_version"] == start + 1
    assert runtime.learn(ahead)["staleness"] == 1.0
    # Two versions behind by collect time: over the bound, so resampled with the newest.
    late = runtime.submit(specs(2, seed=2))
    runtime._finish(late)
    runtime.learn(first)
    runtime.learn(first)
    assert [r.weights_version for r in runtime.collect(late)] == [start + 4] * 2


def test_evaluate_state_dict_and_restore_at_an_older_version(runtime: RayRuntime) -> None:
    saved = runtime.state_dict()
    mean = float(saved["algorithm"]["weights"]["mean"][0])
    iterate(runtime)
    current = runtime.evaluate(specs(3), adapt_steps=1)
    given = runtime.evaluate(specs(3), adapt_steps=1, weights={"mean": torch.tensor([-1.0])})
    assert [m["mean"] for m in current] == [mean + 0.5] * 3
    assert [m["mean"] for m in given] == [-1.0] * 3
    runtime.load_state_dict(saved)
    assert runtime.weights_version == saved["weights_version"]
    assert [m["mean"] for m in runtime.evaluate(specs(3), adapt_steps=1)] == [mean] * 3
    timings = runtime.timings()
    assert timings["learner_s"] > 0 and timings["waiting_s"] > 0 and timings["sampling_s"] > 0
    assert runtime.broadcast() > 0


def test_chunks_of_tasks_on_two_workers_match_the_local_runtime(runtime: RayRuntime) -> None:
    local = LocalRuntime(config(workers=0), make_fake_algorithm, make_fake_env, tasks_per_call=2)
    runtime.load_state_dict(local.state_dict())
    runtime.tasks_per_call = 2
    for a, b in zip(iterate(local), iterate(runtime), strict=True):
        assert fakes.same_results(a, b)
    assert local.algorithm.batched_calls == [[0, 1], [2, 3]] * 2


def test_killed_worker_mid_chunk_gives_the_undisturbed_results(runtime: RayRuntime) -> None:
    runtime.tasks_per_call = 3
    batch = specs(6, delay=0.02)  # two calls of 3 tasks, about 0.8 s each
    expected = runtime.collect(runtime.submit(batch))
    handle = runtime.submit(batch)
    time.sleep(0.3)  # both workers are inside their calls
    ray.kill(runtime.workers[0], no_restart=False)
    assert fakes.same_results(expected, runtime.collect(handle))
    assert runtime.timings()["restarted_workers"] == 1.0
    assert runtime.wait_for_workers() == 2  # the killed worker comes back


def test_killed_worker_mid_iteration_gives_the_undisturbed_results(runtime: RayRuntime) -> None:
    batch = specs(6, delay=0.03)
    expected = runtime.collect(runtime.submit(batch))
    handle = runtime.submit(batch)
    time.sleep(0.3)  # both workers are inside their first tasks
    ray.kill(runtime.workers[0], no_restart=False)
    assert fakes.same_results(expected, runtime.collect(handle))
    assert runtime.timings()["restarted_workers"] == 1.0
    # The replacement fetches the weights again and samples the same episodes.
    assert fakes.same_results(expected, runtime.collect(runtime.submit(batch)))

    runtime.config.max_task_retries = 0
    handle = runtime.submit(batch)
    time.sleep(0.3)
    ray.kill(runtime.workers[1], no_restart=False)
    with pytest.raises(RolloutError, match="max_task_retries=0"):
        runtime.collect(handle)


def test_workers_reach_the_parameter_server_by_name_not_by_handle(runtime) -> None:
    # Workers are built with the client as a constructor argument; restarts rebuild them from
    # it, so it must pickle as plain data (an actor handle would be an object-store argument).
    client = runtime.server
    iterate(runtime, iterations=1)
    version, _ = client.latest()  # resolves and caches the handle
    assert version == runtime.weights_version and client._actor is not None
    restored = cloudpickle.loads(cloudpickle.dumps(client))
    assert restored._actor is None and restored.name == client.name
    assert restored.latest()[0] == version


def test_local_start_uses_the_measured_system_config(monkeypatch) -> None:
    # Without Ray running: init_ray must start a new local instance (never join whatever
    # RAY_ADDRESS points at) with results inlined up to INLINE_OBJECT_BYTES.
    calls = []
    monkeypatch.setattr(ray_runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_runtime.ray, "init", lambda **kwargs: calls.append(kwargs))
    assert ray_runtime.init_ray(config(workers=3)) is True
    (kwargs,) = calls
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == 4
    assert kwargs["include_dashboard"] is False
    assert kwargs["_system_config"] == {"max_direct_call_object_size": 4 * 1024 * 1024,
                                        "enable_metrics_collection": False}
    assert kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["_system_config"] is not ray_runtime.LOCAL_SYSTEM_CONFIG  # ray.init adds keys
    calls.clear()
    ray_runtime.init_ray(config(workers=3, learner_cpus=2))  # the learner's CPUs come on top
    assert calls[0]["num_cpus"] == 5
    calls.clear()
    ray_runtime.init_ray(config(address="auto"))
    assert calls == [{"address": "auto"}]
    # A given address is checked first, so one that does not answer fails in seconds.
    checked = []
    monkeypatch.setattr(ray_runtime, "check_address", checked.append)
    calls.clear()
    ray_runtime.init_ray(config(address="10.0.0.7:6379"))
    assert checked == ["10.0.0.7:6379"] and calls == [{"address": "10.0.0.7:6379"}]
