"""Fakes for the distributed runtime's tests (a task env, an algorithm) and unit tests of the
plain classes (parameter server, weights client, worker, placement) without Ray.

Other `test_distributed_*` modules import the fakes from here.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.distributed.errors import TaskFailure
from rlmeta.distributed.learner import Learner
from rlmeta.distributed.parameter_server import ParameterServer
from rlmeta.distributed.placement import learner_placement
from rlmeta.distributed.worker import RolloutWorker, WeightsClient
from rlmeta.rollout import sample_rollout, set_task_on

HORIZON = 4
SEQUENCES = 3


class FakeTaskEnv(gym.Env):
    """1-D point that should move to `goal`. A task may ask the env to raise at a step
    (`fail_at`) or to sleep per step (`delay`, so a test can kill a worker mid-task)."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.task: dict[str, Any] = {"goal": 0.0}
        self.position = 0.0
        self.t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"goal": float(g)} for g in rng.uniform(-2.0, 2.0, n)]

    def set_task(self, task: dict[str, Any]) -> None:
        if "goal" not in task:
            raise ValueError(f"task needs a goal, got {task}")
        self.task = task

    def get_task(self) -> dict[str, Any]:
        return self.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-1.0, 1.0))
        self.t = 0
        return np.array([self.position], np.float32), {}

    def step(self, action: np.ndarray):
        if self.t == self.task.get("fail_at", -1):
            raise ValueError("the fake env broke")
        time.sleep(self.task.get("delay", 0.0))
        self.position += float(np.clip(action, -1.0, 1.0)[0])
        self.t += 1
        reward = -abs(self.position - self.task["goal"])
        return np.array([self.position], np.float32), reward, False, self.t >= HORIZON, {}


def make_fake_env() -> gym.Env:
    return FakeTaskEnv()


def make_broken_env() -> gym.Env:
    raise OSError("no display for the fake env")


class _Actor:
    def __init__(self, mean: torch.Tensor) -> None:
        self.mean = mean

    def start_sequences(self, slots: np.ndarray) -> None:
        pass

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        # The global torch RNG on purpose: the runtime must seed it per task.
        noise = torch.randn(len(observations), 1)
        actions = (self.mean + 0.3 * noise).numpy().astype(np.float32)
        return actions, np.zeros(len(observations), np.float32)


class FakeAlgorithm:
    """Implements the `Algorithm` protocol with one parameter and no real learning:
    each update adds the meta-batch's mean return to a counter and steps `mean` by 0.25."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.mean = torch.zeros(1)
        self.updates = 0
        self.seen_indices: list[list[int]] = []
        self.batched_calls: list[list[int]] = []

    def get_weights(self) -> Weights:
        return {"mean": self.mean.clone()}

    def set_weights(self, weights: Weights) -> None:
        self.mean = weights["mean"].clone()

    def run_task(self, envs: list[gym.Env], spec: TaskSpec, weights_version: int) -> TaskResult:
        rollout = sample_rollout(
            envs, _Actor(self.mean), SEQUENCES, seed=spec.seed, task=spec.task,
            weights_version=weights_version,
        )
        return TaskResult(
            index=spec.index, task=spec.task, seed=spec.seed, weights_version=weights_version,
            rollouts=[rollout], metrics={"return": rollout.mean_return()},
            env_steps=rollout.num_steps,
        )

    def run_tasks(
        self, envs: list[gym.Env], specs: list[TaskSpec], weights_version: int
    ) -> list[TaskResult]:
        """Samples the specs one after another without reseeding: like RL²'s batched sampling,
        what a spec gets depends on the specs before it in the call (one RNG stream)."""
        self.batched_calls.append([spec.index for spec in specs])
        results = []
        for spec in specs:
            set_task_on(envs, spec.task, spec.index)
            rollout = sample_rollout(
                envs, _Actor(self.mean), SEQUENCES, task=spec.task,
                sequence_seeds=[spec.seed + j for j in range(SEQUENCES)],
                weights_version=weights_version,
            )
            results.append(TaskResult(
                index=spec.index, task=spec.task, seed=spec.seed,
                weights_version=weights_version, rollouts=[rollout],
                metrics={"return": rollout.mean_return()}, env_steps=rollout.num_steps,
            ))
        return results

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        self.seen_indices.append([r.index for r in results])
        self.mean = self.mean + 0.25
        self.updates += 1
        return {"mean_return": float(np.mean([r.metrics["return"] for r in results]))}

    def evaluate_task(self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int):
        result = self.run_task(envs, spec, -1)
        return {"return/step_0": result.metrics["return"], "mean": float(self.mean[0])}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.get_weights(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = state["weights"]["mean"].clone()
        self.updates = int(state["updates"])


def make_fake_algorithm(device: str) -> FakeAlgorithm:
    return FakeAlgorithm(device)


def specs(n: int, seed: int = 0, **extra: Any) -> list[TaskSpec]:
    rng = np.random.default_rng(seed)
    tasks = FakeTaskEnv().sample_tasks(n, rng)
    return [TaskSpec(i, {**task, **extra}, seed=1000 * seed + i) for i, task in enumerate(tasks)]


def same_results(a: list[TaskResult], b: list[TaskResult]) -> bool:
    if [r.index for r in a] != [r.index for r in b]:
        return False
    return all(
        x.weights_version == y.weights_version
        and np.array_equal(x.rollouts[0].actions, y.rollouts[0].actions)
        and np.array_equal(x.rollouts[0].rewards, y.rollouts[0].rewards)
        for x, y in zip(a, b, strict=True)
    )


# ---- unit tests of the plain classes -------------------------------------------------------


def test_parameter_server_versions_only_grow() -> None:
    server = ParameterServer()
    with pytest.raises(RuntimeError, match="no weights published"):
        server.latest()
    assert server.publish(0, "w0")
    assert server.publish(2, "w2")
    assert not server.publish(1, "w1")
    assert not server.publish(2, "w2-again")
    assert server.latest() == (2, "w2")
    server.reset(1, "w1-restored")  # a checkpoint restored at an older version
    assert server.latest() == (1, "w1-restored")
    assert not server.publish(0, "w0-late")
    assert server.latest() == (1, "w1-restored")


def test_weights_client_fetches_only_newer_versions() -> None:
    algorithm = FakeAlgorithm()
    fetched: list[str] = []

    def fetch(handle: str) -> Weights:
        fetched.append(handle)
        return {"mean": torch.tensor([float(handle[1:])])}

    client = WeightsClient(algorithm, fetch)
    client.update(1, "v1")
    client.update(1, "v1")
    client.update(0, "v0")
    client.update(3, "v3")
    assert fetched == ["v1", "v3"]
    assert float(algorithm.mean[0]) == 3.0
    client.update(None, "v7")  # one-off weights: loaded, and the version forgotten
    client.update(3, "v3")
    assert fetched == ["v1", "v3", "v7", "v3"]


def server_with(weights: Weights, version: int = 0) -> ParameterServer:
    server = ParameterServer()
    server.publish(version, weights)
    return server


def test_weights_client_pulls_and_fetches_only_when_the_version_grew() -> None:
    fetched: list[str] = []

    def fetch(handle: str) -> Weights:
        fetched.append(handle)
        return {"mean": torch.tensor([float(handle[1:])])}

    server = server_with("v0")
    client = WeightsClient(FakeAlgorithm(), fetch, server, wait_s=0.05)
    assert [client.pull(0), client.pull(0)] == [0, 0]
    server.publish(2, "v2")
    assert [client.pull(1), client.pull(2), client.pull(0)] == [2, 2, 2]
    assert fetched == ["v0", "v2"] and client.fetches == 2
    # A task that needs a version the server has not got yet is never sampled with stale weights.
    with pytest.raises(RuntimeError, match="still has weights version 2.*needs version 3"):
        client.pull(3)
    assert fetched == ["v0", "v2"]


class CountingServer(ParameterServer):
    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def latest(self):
        self.asked += 1
        return super().latest()


def test_weights_client_holding_the_needed_version_does_not_ask_the_server() -> None:
    server = CountingServer()
    server.publish(0, "v0")
    client = WeightsClient(FakeAlgorithm(), lambda h: {"mean": torch.tensor([0.0])}, server)
    assert [client.pull(0) for _ in range(5)] == [0] * 5
    assert server.asked == 1
    server.publish(1, "v1")
    assert client.pull(1) == 1 and server.asked == 2
    client.update(None, "one-off")  # one-off weights: the next pull must ask again
    assert client.pull(1) == 1 and server.asked == 3


def test_worker_seeds_each_task_so_the_order_does_not_matter() -> None:
    server = server_with({"mean": torch.tensor([0.5])})
    worker = RolloutWorker(make_fake_algorithm, make_fake_env, 2, server)
    batch = specs(3)
    forward = [worker.run([spec], 0)[0] for spec in batch]
    backward = [worker.run([spec], 0)[0] for spec in reversed(batch)][::-1]
    assert same_results(forward, backward)
    assert worker.weights.fetches == 1
    assert all(r.env_steps == SEQUENCES * HORIZON for r in forward)


def test_worker_reports_env_errors_with_env_task_and_step() -> None:
    server = server_with({"mean": torch.zeros(1)})
    worker = RolloutWorker(make_fake_algorithm, make_fake_env, 2, server)
    spec = TaskSpec(5, {"goal": 1.0, "fail_at": 2}, seed=3)
    (failure,) = worker.run([spec], 0)
    assert isinstance(failure, TaskFailure) and not failure.fatal
    assert "FakeTaskEnv" in failure.message and "goal=1.000" in failure.message
    assert "at step 2" in failure.message and "the fake env broke" in failure.message
    (bad_task,) = worker.run([TaskSpec(6, {"speed": 1.0}, seed=3)], 0)
    assert isinstance(bad_task, TaskFailure) and "set_task" in bad_task.message


def test_worker_that_cannot_build_envs_says_why_on_every_task() -> None:
    worker = RolloutWorker(make_fake_algorithm, make_broken_env, 2, ParameterServer())
    failures = worker.run(specs(2), 0)
    assert [f.index for f in failures] == [0, 1] and all(f.fatal for f in failures)
    failure = failures[0]
    assert "could not build its envs" in failure.message and "no display" in failure.message


def test_learner_puts_each_version_once_and_publishes_it_to_the_server() -> None:
    puts: list[Weights] = []
    server = ParameterServer()
    learner = Learner(make_fake_algorithm, "cpu", lambda w: puts.append(w) or len(puts), server)
    learner.publish(0)
    assert server.latest() == (0, [1])
    worker = RolloutWorker(make_fake_algorithm, make_fake_env, 1, server, lambda h: puts[h[0] - 1])
    (result,) = worker.run(specs(1), 0)
    metrics, _, _ = learner.update([result], 1)
    assert server.latest() == (1, [2]) and len(puts) == 2
    assert float(puts[1]["mean"][0]) == 0.25 and "mean_return" in metrics
    with pytest.raises(ValueError, match="version 1 is not newer"):
        learner.publish(1)
    learner.publish(0, reset=True)  # a restored checkpoint restarts the versions
    assert server.latest() == (0, [len(puts)])


def test_learner_threads_are_set_as_given_and_none_leaves_torch_alone() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        Learner(make_fake_algorithm, "cpu")
        assert torch.get_num_threads() == 1
        Learner(make_fake_algorithm, "cpu", threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("device", "resources", "expected"),
    [
        ("auto", {"CPU": 8.0, "GPU": 1.0}, ("cuda", 1.0)),
        ("auto", {"CPU": 8.0}, ("cpu", 0.0)),
        ("cuda", {"CPU": 8.0, "GPU": 4.0}, ("cuda", 1.0)),
        ("cpu", {"CPU": 8.0, "GPU": 1.0}, ("cpu", 0.0)),
    ],
)
def test_learner_placement(device: str, resources: dict, expected: tuple) -> None:
    assert learner_placement(device, resources) == expected


def test_learner_placement_rejects_cuda_without_gpu_and_unknown_devices() -> None:
    with pytest.raises(RuntimeError, match="cluster has no GPU"):
        learner_placement("cuda", {"CPU": 4.0})
    with pytest.raises(ValueError, match="device must be one of"):
        learner_placement("tpu", {"CPU": 4.0})
