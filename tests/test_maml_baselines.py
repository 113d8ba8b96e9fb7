"""The MAML benchmark's baselines: the oracle's `TaskInObservation` wrapper and the pretrained
policy's `maml.inner_steps: 0` (plain multi-task TRPO on the pre-update episodes)."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.config_io import config_from_dict, config_to_dict
from rlmeta.maml import MAMLAlgorithm
from rlmeta.maml.local import sample_meta_batch
from rlmeta.run import build
from rlmeta.tasks import get_task, make_task_env, sample_tasks, set_task
from rlmeta_envs.wrappers import TaskInObservation, task_features

ORACLE = "rlmeta_envs.wrappers:TaskInObservation"
TABLES = Path(__file__).resolve().parents[1] / "benchmarks" / "maml_tables.py"


def _tables_module():
    # benchmarks/ is a folder of scripts, not an installed package.
    spec = importlib.util.spec_from_file_location("maml_tables", TABLES)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_wrapper_appends_the_current_task_and_keeps_the_protocol():
    env = make_task_env(ORACLE, wrapped="rlmeta/Navigation2D-v0", wrapped_kwargs={"horizon": 7})
    assert env.observation_space.shape == (4,)
    assert env.unwrapped.horizon == 7
    tasks = sample_tasks(env, 2, np.random.default_rng(3))
    for task in tasks:
        set_task(env, task)  # through env.unwrapped, past the wrapper
        assert get_task(env) == task
        obs, _ = env.reset(seed=1)
        np.testing.assert_allclose(obs, [0.0, 0.0, *task["goal"]], rtol=0, atol=1e-7)
        obs, reward, *_ = env.step(np.array([0.1, 0.0], dtype=np.float32))
        np.testing.assert_allclose(obs[2:], task["goal"], rtol=0, atol=1e-7)
        distance = np.hypot(0.1 - task["goal"][0], task["goal"][1])
        assert reward == pytest.approx(-distance, abs=1e-6)
    env.close()


def test_wrapper_passes_check_env_on_navigation_and_cheetah():
    check_env(TaskInObservation(wrapped="rlmeta/Navigation2D-v0"), skip_render_check=True)
    cheetah = TaskInObservation(make_task_env("rlmeta/HalfCheetahDir-v0", horizon=5))
    set_task(cheetah, {"direction": -1})
    obs, _ = cheetah.reset(seed=0)
    assert obs.shape == cheetah.observation_space.shape == (18,)
    assert obs[-1] == -1.0
    check_env(cheetah, skip_render_check=True)


def test_task_features_and_wrapper_errors():
    np.testing.assert_array_equal(
        task_features({"a": 1, "b": [[2.0, 3.0]]}), np.array([1, 2, 3], dtype=np.float32)
    )
    with pytest.raises(ValueError, match="task value 'env_name'='reach' is not numeric"):
        task_features({"env_name": "reach"})
    with pytest.raises(ValueError, match="exactly one of env"):
        TaskInObservation()
    with pytest.raises(ValueError, match="CartPoleEnv is not a task environment: no get_task"):
        TaskInObservation(wrapped="CartPole-v1")
    with pytest.raises(ValueError, match="flat Box observation space, got Discrete"):
        TaskInObservation(_DiscreteObservationEnv())


class _DiscreteObservationEnv(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)


def _pretrained_config() -> ExperimentConfig:
    config = ExperimentConfig()
    config.policy.hidden_sizes = [16]
    config.maml.inner_steps = 0
    config.maml.episodes_per_task = 3
    return config_from_dict(config_to_dict(config))  # the config loader accepts 0


def test_inner_steps_zero_is_multitask_trpo():
    envs = [make_task_env("rlmeta/Navigation2D-v0", horizon=15) for _ in range(3)]
    config = _pretrained_config()
    algorithm = MAMLAlgorithm(config, envs[0].observation_space, envs[0].action_space)
    tasks = sample_tasks(envs[0], 3, np.random.default_rng(0))
    specs = [TaskSpec(i, task, 100 + i) for i, task in enumerate(tasks)]
    results = sample_meta_batch(algorithm, envs, specs)
    assert all(len(r.rollouts) == 1 for r in results)
    assert all(set(r.metrics) == {"return/step_0"} for r in results)
    before = algorithm.get_weights()
    metrics = algorithm.update(results)
    returns = {key for key in metrics if key.startswith("return/")}
    assert returns == {"return/step_0"}
    assert metrics["trpo/accepted"] == 1.0
    assert 0 < metrics["kl"] <= config.maml.max_kl * 1.5
    after = algorithm.get_weights()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # Evaluation still fine-tunes a pretrained policy with the evaluation step sizes.
    for env in envs:
        set_task(env, specs[0].task)
    evaluated = algorithm.evaluate_task(envs, specs[0], adapt_steps=2)
    assert set(evaluated) == {"return/step_0", "return/step_1", "return/step_2"}


def test_inner_steps_zero_rejects_what_needs_an_inner_loop():
    config = _pretrained_config()
    env = make_task_env("rlmeta/Navigation2D-v0")
    with pytest.raises(ValueError, match="maml.inner_steps 0 has no inner loop"):
        config.maml.learn_inner_lr = True
    with pytest.raises(ValueError, match="maml.inner_steps 0 has no inner loop"):
        config.maml.outer = "reptile"
    # Refused settings leave the config as it was, usable.
    assert (config.maml.learn_inner_lr, config.maml.outer) == (False, "trpo")
    MAMLAlgorithm(config, env.observation_space, env.action_space)


def test_benchmark_methods_share_env_steps_and_tasks():
    tables = _tables_module()
    args = Namespace(workers=0, eval_tasks=5, iterations=3, quick=False, policy=None)
    configs = tables.method_configs(tables.base_config(tables.ENVS["navigation2d"], args))
    maml, pretrained, oracle = configs["maml"], configs["pretrained"], configs["oracle"]
    steps = {name: c.maml.meta_batch_size * c.maml.episodes_per_task * (c.maml.inner_steps + 1)
             for name, c in configs.items()}
    assert steps["maml"] == steps["pretrained"] == steps["oracle"] == 20 * 20 * 2
    assert pretrained.maml.inner_steps == oracle.maml.inner_steps == 0
    assert pretrained.maml.episodes_per_task == maml.maml.episodes_per_task
    assert (maml.seed, maml.iterations) == (oracle.seed, oracle.iterations) == (0, 3)
    oracle_env = build.build_env(oracle)
    plain_env = build.build_env(maml)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert sample_tasks(oracle_env, 4, rng_a) == sample_tasks(plain_env, 4, rng_b)
    assert oracle_env.observation_space.shape == (4,)
    assert tables.normalised_score(-20.0, -40.0, 0.0) == pytest.approx(0.5)
