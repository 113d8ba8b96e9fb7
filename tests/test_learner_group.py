"""The data-parallel learner group (`learners: 2`) on a local Ray instance, gloo on 2 cores.

A seeded sync run gives the same weights with two learners, each doing half of the update's work
and summing with torch.distributed, as with one learner doing all of it: for MAML-TRPO (both
Fisher metrics, with a learned step size too), MAML-PPO, Reptile and RL²-PPO (a shared value
network: half of each minibatch's trials each; a separate one: one side of the policy each).
Only the order of float32 sums differs, so the weights agree to `RTOL`/`ATOL`, not bit for bit. A
killed learner stops the run with a one-line error naming it, and `resume` continues from the
last checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from rlmeta import checkpoint
from rlmeta.collectives import Solo, is_group, shard_bounds, sum_with_floats
from rlmeta.config import ExperimentConfig, PolicyConfig, with_changes
from rlmeta.distributed import LearnerError, make_runtime
from rlmeta.distributed import ray_runtime as ray_runtime_module
from rlmeta.distributed.learner_group import check_gpus
from rlmeta.distributed.ray_runtime import RayRuntime, start_local_ray
from rlmeta.maml.config import MAMLConfig
from rlmeta.rl2.config import RL2Config
from rlmeta.run import build
from rlmeta.run.train import draw_task_specs, train

pytestmark = pytest.mark.ray

# Two learners sum each shard's float32 shares in another order than one learner sums the whole
# batch: one update's weights differ by ~1e-6 relative. Each update's weights sample the next
# meta-batch, which carries the difference on; after UPDATES updates it stays below these.
RTOL, ATOL = 1e-3, 1e-4
UPDATES = 3


def maml(**settings) -> ExperimentConfig:
    # TRPO's conjugate gradient amplifies float32 roundings by the Fisher matrix's condition
    # number: at the default damping (1e-5) a 1e-7 relative perturbation of each Fisher product
    # moves one learner's own step by ~1e-3 relative, as reordering any sum would. Damping 0.1
    # conditions the solve so the comparison measures the group, not the conditioning.
    return ExperimentConfig(
        algorithm="maml", env="rlmeta/Navigation2D-v0", envs_per_worker=2, device="cpu",
        seed=3, maml=MAMLConfig(**{"meta_batch_size": 5, "episodes_per_task": 2,
                                   "cg_damping": 0.1, **settings}),
        policy=PolicyConfig(hidden_sizes=[16]),
    )


def rl2(**settings) -> ExperimentConfig:
    # 5 tasks × 2 trials are 10 trials in 3 minibatches of 4, 3 and 3: two learners take 2+2,
    # 2+1 and 2+1 of them (a shared value network), or one trains the action side and the other
    # the value side on whole minibatches (a separate one).
    return ExperimentConfig(
        algorithm="rl2", env="rlmeta/Bandit-v0", env_kwargs={"arms": 3}, envs_per_worker=4,
        device="cpu", seed=3, policy=PolicyConfig(hidden_sizes=[]),
        rl2=RL2Config(**{"meta_batch_size": 5, "trials_per_task": 2, "episodes_per_trial": 4,
                         "hidden_size": 8, "minibatches": 3, "epochs": 2, **settings}),
    )


CONFIGS = {
    "maml-trpo-adapted": lambda: maml(),
    # The exact metric with a learned step size is the worse conditioned: damped more.
    "maml-trpo-exact-learned-lr": lambda: maml(fisher="exact", learn_inner_lr=True, cg_damping=1.0),
    "maml-ppo": lambda: maml(outer="ppo", ppo_epochs=3),
    "maml-reptile": lambda: maml(outer="reptile", first_order=True, outer_lr=1.0),
    "rl2-ppo": rl2,
    "rl2-ppo-separate-value": lambda: rl2(value_network="separate",
                                          recurrent_cell="layer_norm_gru"),
}


@pytest.fixture(scope="module")
def ray_instance():
    torch.set_num_threads(1)
    # A worker and two one-CPU learners.
    start_local_ray(3)
    yield
    ray.shutdown()


def run_updates(config: ExperimentConfig, updates: int = UPDATES) -> tuple[dict, list[dict]]:
    """Sample and learn `updates` seeded sync iterations; the final weights and each update's
    metrics."""
    env = build.build_env(config)
    rng = np.random.default_rng(config.seed)
    runtime = build.make_runtime(config)
    try:
        logged = []
        for _ in range(updates):
            specs = draw_task_specs(env, build.algorithm_of(config).meta_batch_size(config), rng)
            logged.append(runtime.learn(runtime.collect(runtime.submit(specs))))
        return runtime.get_weights(), logged
    finally:
        runtime.shutdown()
        env.close()


def assert_weights_close(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=RTOL, atol=ATOL, msg=name)


def test_shards_are_consecutive_cover_the_batch_and_differ_by_at_most_one() -> None:
    for count, size in [(5, 2), (7, 3), (4, 4), (40, 8)]:
        bounds = [shard_bounds(count, rank, size) for rank in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        lengths = [stop - start for start, stop in bounds]
        assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(5, 2, 2)


def test_one_learner_is_given_no_collective() -> None:
    assert not is_group(None) and not is_group(Solo())
    value = torch.tensor([1.5, 2.0])
    assert Solo().sum_(value) is value


def test_a_group_needs_workers_and_a_gpu_per_learner() -> None:
    with pytest.raises(ValueError, match="learners: 2 runs a learner group on Ray.*workers >= 1"):
        make_runtime(with_changes(maml(), workers=0, learners=2), None, None)
    with pytest.raises(RuntimeError, match="learners: 4 take a GPU each but the cluster has 2"):
        check_gpus(4, 1.0, {"GPU": 2.0, "CPU": 16.0})
    check_gpus(4, 0.0, {"CPU": 16.0})  # CPU learners take no GPU
    check_gpus(4, 1.0, {"GPU": 4.0})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_learners_give_the_weights_of_one(ray_instance, name: str) -> None:
    config = CONFIGS[name]()
    # One learner in one process (what any worker count gives, tests/test_distributed_ray.py)
    # against one worker and two learners, each on its shard.
    one, one_logged = run_updates(with_changes(config, workers=0, learners=1))
    two, two_logged = run_updates(with_changes(config, workers=1, learners=2))
    assert_weights_close(two, one)
    # The runs moved the weights, so equal weights are not equal initial weights.
    initial = build.build_algorithm(config, "cpu").get_weights()
    assert any(not torch.allclose(one[k], initial[k], atol=1e-4) for k in one)
    # Logged means are the whole meta-batch's, not rank 0's shard's.
    for a, b in zip(one_logged, two_logged, strict=True):
        shared = sorted(set(a) & set(b) - {"explained_variance"})
        assert shared == sorted(set(a) - {"explained_variance"})
        assert {k: b[k] for k in shared} == pytest.approx({k: a[k] for k in shared},
                                                           rel=1e-3, abs=1e-4)


def test_results_fewer_than_learners_are_refused(ray_instance) -> None:
    config = with_changes(maml(), workers=1, learners=2)
    runtime = build.make_runtime(config)
    try:
        env = build.build_env(config)
        specs = draw_task_specs(env, 1, np.random.default_rng(0))
        results = runtime.collect(runtime.submit(specs))
        with pytest.raises(LearnerError, match="1 task results cannot be shared by 2 learners"):
            runtime.learn(results)
    finally:
        runtime.shutdown()


def test_a_killed_learner_stops_the_run_and_resume_continues_it(
    ray_instance, tmp_path, monkeypatch
) -> None:
    config = with_changes(maml(), workers=1, learners=2, iterations=4, checkpoint_every=1)
    learn = RayRuntime.learn

    def learn_killing_learner_1_at_version_2(self, results):
        if self.weights_version == 2:
            ray.kill(self.learners.actors[1])
        return learn(self, results)

    monkeypatch.setattr(RayRuntime, "learn", learn_killing_learner_1_at_version_2)
    with pytest.raises(LearnerError) as stopped:
        train(config, tmp_path / "run")
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("learner 1 of 2 died while updating to weights version 3")
    assert "rlmeta resume" in message
    # The checkpoint of iteration 2 is intact and the newest: the failed update wrote nothing.
    newest = checkpoint.latest_checkpoint(tmp_path / "run")
    assert newest == checkpoint.checkpoint_path(tmp_path / "run", 2)
    assert checkpoint.load_checkpoint(newest)["iteration"] == 2

    monkeypatch.setattr(RayRuntime, "learn", learn)
    summary = train(config, tmp_path / "run", resume=True)
    assert summary["iteration"] == 3
    resumed = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "run"))
    # The same as an uninterrupted run with one learner in one process.
    uninterrupted = train(with_changes(config, workers=0, learners=1), tmp_path / "reference")
    assert uninterrupted["iteration"] == 3
    reference = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "reference"))
    assert_weights_close(resumed["runtime"]["algorithm"]["weights"],
                         reference["runtime"]["algorithm"]["weights"])


def test_the_local_instance_reserves_learner_cpus_per_learner(monkeypatch) -> None:
    started = {}
    monkeypatch.setattr(ray_runtime_module, "start_local_ray",
                        lambda num_cpus: started.setdefault("cpus", num_cpus))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    config = with_changes(maml(), workers=3, learners=2, learner_cpus=2)
    assert ray_runtime_module.init_ray(config) is True
    assert started["cpus"] == 3 + 2 * 2


def test_the_scaling_model_adds_sampling_rounds_update_shards_and_broadcast() -> None:
    from benchmarks.scaling import predict

    model = {"tasks": 20, "steps_per_task": 4000, "step_s": 1e-5, "task_s": 0.05,
             "collective_s": 0.1, "broadcast_s": 0.01}
    # 2 workers: 10 rounds of 4000 steps; 1 learner: 20 tasks.
    assert predict(model, 2, 1) == pytest.approx(
        {"sampling_s": 0.4, "update_s": 1.0, "iteration_s": 1.41})
    # 64 workers take one round (a task is one call); 8 learners: 3 tasks each, plus the sums.
    assert predict(model, 64, 8, gpu_speedup=2.0) == pytest.approx(
        {"sampling_s": 0.04, "update_s": 3 * 0.05 / 2 + 0.1, "iteration_s": 0.04 + 0.175 + 0.01})


def test_sum_with_floats_returns_the_vector_in_its_dtype_and_the_scalars() -> None:
    vector = torch.tensor([1.5, -2.25, 3.0])
    summed, scalars = sum_with_floats(Solo(), vector, torch.tensor(0.5), 2.0)
    assert summed.dtype == torch.float32 and torch.equal(summed, vector)
    assert scalars == [0.5, 2.0]
