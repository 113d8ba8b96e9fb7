"""A node of a multi-node Ray cluster (all on this machine) disappears while training goes on."""

from __future__ import annotations

import time

import pytest
import ray
import test_distributed_fakes as fakes
import torch
from ray import cloudpickle
from ray.cluster_utils import Cluster
from test_distributed_fakes import make_fake_algorithm, make_fake_env, specs

from rlmeta.config import ExperimentConfig
from rlmeta.distributed import make_runtime

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    torch.set_num_threads(1)
    cloudpickle.register_pickle_by_value(fakes)
    # The head has room for the learner only, so rollout workers live on the other nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=cluster.address, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    cloudpickle.unregister_pickle_by_value(fakes)


def train(runtime, on_iteration=None) -> list:
    per_iteration = []
    for i in range(2):
        # 0.8 s per task, 3 per worker: a worker whose node is removed notices its raylet is
        # gone only within about a second, so shorter tasks could all finish before it dies.
        handle = runtime.submit(specs(6, seed=i, delay=0.1))
        if on_iteration is not None:
            on_iteration(i)
        results = runtime.collect(handle)
        runtime.learn(results)
        per_iteration.append(results)
    return per_iteration


def test_training_survives_losing_a_node(cluster: Cluster) -> None:
    config = ExperimentConfig(workers=2, envs_per_worker=2, device="cpu", address="auto")
    local = make_runtime(ExperimentConfig(workers=0, envs_per_worker=2, device="cpu"),
                         make_fake_algorithm, make_fake_env)
    expected = train(local)

    runtime = make_runtime(config, make_fake_algorithm, make_fake_env)  # learner on the head
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    ray.get([worker.ready.remote() for worker in runtime.workers])

    def lose_a_node(iteration: int) -> None:
        if iteration == 1:
            time.sleep(0.3)  # both workers are inside their first tasks, with more queued
            cluster.remove_node(doomed, allow_graceful=False)
            cluster.add_node(num_cpus=1)  # the replacement the autoscaler would start

    try:
        got = train(runtime, lose_a_node)
        timings = runtime.timings()
        weights = runtime.get_weights()
    finally:
        runtime.shutdown()
    for a, b in zip(expected, got, strict=True):
        assert fakes.same_results(a, b)
    assert timings["restarted_workers"] == 1.0
    assert torch.equal(weights["mean"], local.get_weights()["mean"])
