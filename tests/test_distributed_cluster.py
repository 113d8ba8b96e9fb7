"""A node of a multi-node Ray cluster (all on this machine) disappears while training goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import ray
import test_distributed_fakes as fakes
import torch
from ray import cloudpickle
from ray.cluster_utils import Cluster
from test_distributed_fakes import make_fake_algorithm, make_fake_env, specs

from benchmarks.rl2_tables import main as rl2_tables
from rlmeta.config import ExperimentConfig, with_changes
from rlmeta.config_io import load_config
from rlmeta.distributed import make_runtime
from rlmeta.run.train import train as train_run

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


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


def wait_until_lost_nodes_are_noticed(cluster: Cluster, timeout_s: float = 120.0) -> None:
    running = {node.node_id for node in cluster.list_all_nodes()}
    deadline = time.monotonic() + timeout_s
    while any(node["Alive"] and node["NodeID"] not in running for node in ray.nodes()):
        assert time.monotonic() < deadline, "Ray still counts a removed node as alive"
        time.sleep(0.5)


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


def test_the_cluster_recipe_of_an_rl2_row_trains_across_nodes_into_the_table(
    cluster: Cluster, tmp_path: Path
) -> None:
    # experiments/rl2_tabular_mdp_n10_cluster.yaml is the mdp-10 row at the paper's scale, for a
    # real cluster; here its settings at a tiny size, with rollout workers on nodes other than the
    # head's, end to end: `rlmeta train --address auto`, then the run measured as a table row.
    recipe = load_config(ROOT / "experiments" / "rl2_tabular_mdp_n10_cluster.yaml")
    settings = recipe.rl2
    # The published reproduction's 12,000 updates (of 240,000 env steps: test_bench_rl2_tables),
    # each one worker call per worker.
    assert recipe.iterations == 12_000
    assert settings.meta_batch_size == recipe.workers * (
        recipe.envs_per_worker // settings.trials_per_task)
    # A node removed by an earlier test is still Alive to Ray until its heartbeats are missed
    # (seconds later); an actor placed on it meanwhile dies with it.
    wait_until_lost_nodes_are_noticed(cluster)
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        config = with_changes(recipe, iterations=2, checkpoint_every=1, workers=2,
                              envs_per_worker=4, address="auto", device="cpu",
                              rl2=with_changes(settings, meta_batch_size=4, hidden_size=16))
        train_run(config, tmp_path / "run")
    finally:
        for node in nodes:
            cluster.remove_node(node)
    rl2_tables(["--evaluate", str(tmp_path / "run"), "--tasks", "4", "--eval-batch", "4",
                "--out", str(tmp_path / "table")])
    row = json.loads((tmp_path / "table" / "rl2_tables.json").read_text())["rows"][0]
    assert (row["row"], row["rl2_updates"], row["rl2_env_steps"]) == ("mdp-10", 2, 1600)
    trained = row["rl2_settings"]["rl2"]
    assert (trained["recurrent_cell"], trained["value_network"], trained["gae_lambda"],
            trained["epochs"], trained["weight_decay"]) == ("layer_norm_gru", "separate", 0.3, 8,
                                                            0.01)


METAWORLD_RECIPES = ("maml_metaworld_ml10_cluster", "rl2_metaworld_ml10_cluster")


@pytest.mark.parametrize("benchmark", ["ml10", "ml45"])
@pytest.mark.parametrize("algorithm", ["maml", "rl2"])
def test_the_metaworld_cluster_recipes_are_their_benchmarks_files_spread_over_workers(
    algorithm: str, benchmark: str
) -> None:
    # Each recipe is the single-machine file with the paper's settings, on enough workers that
    # one iteration's tasks (MAML) or trials (RL²) are one call on each worker.
    recipe = load_config(ROOT / "experiments" / f"{algorithm}_metaworld_{benchmark}_cluster.yaml")
    single = load_config(ROOT / "experiments" / f"{algorithm}_metaworld_{benchmark}.yaml")
    placement = ("workers", "envs_per_worker", "device", "learners", "keep_checkpoints")
    assert with_changes(recipe, **{key: getattr(single, key) for key in placement}) == single
    settings = getattr(recipe, algorithm)
    if algorithm == "maml":
        assert recipe.envs_per_worker == settings.episodes_per_task
        assert recipe.workers == settings.meta_batch_size
    else:
        assert recipe.workers * recipe.envs_per_worker == settings.meta_batch_size
    assert recipe.device == "auto"


@pytest.mark.parametrize("name", METAWORLD_RECIPES)
def test_a_metaworld_cluster_recipe_trains_and_checkpoints_across_nodes(
    cluster: Cluster, tmp_path: Path, name: str
) -> None:
    # The recipe at a tiny size (2 iterations, 2 tasks or trials of 2 episodes of 10 steps) on a
    # cluster whose head has room for the learner only: the rollout workers run on two other
    # nodes. The Meta-World ML10 tasks are built once (cached on disk) and loaded by the workers.
    recipe = load_config(ROOT / "experiments" / f"{name}.yaml")
    wait_until_lost_nodes_are_noticed(cluster)
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    algorithm = recipe.algorithm
    sizes = ({"meta_batch_size": 2, "episodes_per_task": 2} if algorithm == "maml"
             else {"meta_batch_size": 2, "episodes_per_trial": 2})
    try:
        config = with_changes(
            recipe, iterations=2, checkpoint_every=1, workers=2,
            envs_per_worker=2 if algorithm == "maml" else 1, address="auto", device="cpu",
            env_kwargs={**recipe.env_kwargs, "horizon": 10},
            **{algorithm: with_changes(getattr(recipe, algorithm), **sizes)})
        train_run(config, tmp_path / "run")
    finally:
        for node in nodes:
            cluster.remove_node(node)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [m["iteration"] for m in metrics] == [0, 1]
    assert all(m["env_steps"] > 0 for m in metrics)
    checkpoints = sorted(path.name for path in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert "ckpt_000002.pt" in checkpoints
