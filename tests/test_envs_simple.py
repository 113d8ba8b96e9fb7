"""Navigation2D, Bernoulli bandit and tabular MDP: checker, task semantics, reproducibility."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import rlmeta  # noqa: F401  (registers the families)
from rlmeta_envs.testing import check_reproducible, check_task_env


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, disable_env_checker=True, **kwargs)


@pytest.mark.parametrize(
    "env_id", ["rlmeta/Navigation2D-v0", "rlmeta/Bandit-v0", "rlmeta/TabularMDP-v0"]
)
def test_check_env_under_several_tasks(env_id: str) -> None:
    assert len(check_task_env(make(env_id), n_tasks=3)) == 3


# Navigation2D ---------------------------------------------------------------------------------
def test_navigation_reward_is_minus_distance_to_the_set_goal() -> None:
    env = make("rlmeta/Navigation2D-v0")
    for goal in ([0.3, -0.2], [-0.5, 0.5]):
        env.unwrapped.set_task({"goal": goal})
        env.reset(seed=0)
        obs, reward, terminated, truncated, _ = env.step(np.array([0.05, 0.02], dtype=np.float32))
        np.testing.assert_allclose(obs, [0.05, 0.02], atol=1e-7)
        assert reward == pytest.approx(-math.hypot(0.05 - goal[0], 0.02 - goal[1]))
        assert not terminated and not truncated


def test_navigation_clips_actions_terminates_at_goal_and_truncates_at_horizon() -> None:
    env = make("rlmeta/Navigation2D-v0", horizon=7)
    assert env.unwrapped.horizon == 7
    env.unwrapped.set_task({"goal": [0.2, 0.0]})
    env.reset(seed=0)
    obs, *_ = env.step(np.array([5.0, -5.0]))
    np.testing.assert_allclose(obs, [0.1, -0.1], atol=1e-7)
    env.reset(seed=0)
    _, _, terminated, *_ = env.step(np.array([0.1, 0.0]))
    assert not terminated
    _, reward, terminated, truncated, _ = env.step(np.array([0.1, 0.0]))
    assert terminated and not truncated and reward == pytest.approx(0.0, abs=1e-9)
    env.reset(seed=0)
    flags = [env.step(np.array([-0.1, 0.0]))[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]


# Bandit ---------------------------------------------------------------------------------------
def test_bandit_empirical_means_match_the_task() -> None:
    env = make("rlmeta/Bandit-v0", arms=3)
    task = {"means": [0.1, 0.5, 0.9]}
    env.unwrapped.set_task(task)
    env.reset(seed=123)
    pulls = 4000
    for arm, mean in enumerate(task["means"]):
        total = 0.0
        for _ in range(pulls):
            obs, reward, terminated, truncated, _ = env.step(arm)
            total += reward
            assert terminated and not truncated and reward in (0.0, 1.0)
            np.testing.assert_array_equal(obs, [1.0])
            env.reset()
        # 4 standard errors of a Bernoulli mean at p=0.5 with 4000 pulls is 0.032.
        assert abs(total / pulls - mean) < 0.032


def test_bandit_seeded_reset_reproduces_and_rejects_bad_arm() -> None:
    env = make("rlmeta/Bandit-v0", arms=4)
    check_reproducible(env, seed=5, actions=[0, 1, 2, 3] * 10)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="arm in \\[0, 4\\)"):
        env.step(4)


# Tabular MDP ----------------------------------------------------------------------------------
def test_mdp_transitions_follow_the_task_matrix_and_rewards_its_means() -> None:
    env = make("rlmeta/TabularMDP-v0", states=3, actions=2, horizon=1)
    rewards = [[2.0, -1.0], [0.0, 0.0], [0.0, 0.0]]
    transitions = [[[0.2, 0.0, 0.8], [0.0, 1.0, 0.0]], [[1, 0, 0]] * 2, [[1, 0, 0]] * 2]
    env.unwrapped.set_task({"rewards": rewards, "transitions": transitions})
    env.reset(seed=7)
    n = 4000
    counts = np.zeros(3)
    total = 0.0
    for _ in range(n):
        obs, reward, terminated, truncated, _ = env.step(0)
        assert truncated and not terminated and obs.sum() == 1.0
        counts[int(np.argmax(obs))] += 1
        total += reward
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs, [1.0, 0.0, 0.0])
    assert counts[1] == 0
    # Standard error of the 0.8 frequency is 0.0063; of the mean reward (unit noise) 0.016.
    assert abs(counts[2] / n - 0.8) < 0.03
    assert abs(total / n - 2.0) < 0.07
    obs, *_ = env.step(1)
    np.testing.assert_array_equal(obs, [0.0, 1.0, 0.0])


def test_mdp_horizon_and_reproducibility() -> None:
    env = make("rlmeta/TabularMDP-v0")
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1, np.random.default_rng(3))[0])
    env.reset(seed=0)
    flags = [env.step(i % 5)[3] for i in range(10)]
    assert flags == [False] * 9 + [True]
    check_reproducible(env, seed=11, actions=[i % 5 for i in range(35)])


def test_navigation_reproducible() -> None:
    env = make("rlmeta/Navigation2D-v0")
    actions = list(np.random.default_rng(0).uniform(-0.2, 0.2, size=(150, 2)).astype(np.float32))
    check_reproducible(env, seed=3, actions=actions)


# Task protocol on these families -------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("rlmeta/Navigation2D-v0", {}), ("rlmeta/Bandit-v0", {"arms": 7}),
     ("rlmeta/TabularMDP-v0", {"states": 4, "actions": 3})],
)
def test_sample_tasks_is_deterministic_plain_data(env_id: str, kwargs: dict) -> None:
    import json

    env = make(env_id, **kwargs).unwrapped
    first = env.sample_tasks(4, np.random.default_rng(42))
    assert first == env.sample_tasks(4, np.random.default_rng(42))
    assert first != env.sample_tasks(4, np.random.default_rng(43))
    assert json.loads(json.dumps(first)) == first  # plain data: survives JSON unchanged


@pytest.mark.parametrize(
    ("env_id", "bad", "named"),
    [
        ("rlmeta/Navigation2D-v0", {"goal": [0.1]}, "'goal' \\(2 floats in \\[-0.5, 0.5\\]\\)"),
        ("rlmeta/Navigation2D-v0", {"goal": [0.1, 0.9]}, "'goal'"),
        ("rlmeta/Navigation2D-v0", {"gaol": [0.1, 0.1]}, "'goal'"),
        ("rlmeta/Navigation2D-v0", [0.1, 0.1], "'goal'"),
        ("rlmeta/Navigation2D-v0", {"goal": [0.1, float("nan")]}, "'goal'"),
        ("rlmeta/Bandit-v0", {"means": [0.5] * 4}, "'means' \\(5 floats in \\[0, 1\\]\\)"),
        ("rlmeta/Bandit-v0", {"means": [0.5] * 4 + [1.5]}, "'means'"),
        ("rlmeta/TabularMDP-v0", {"rewards": [[0.0] * 5] * 10}, "'rewards'.*'transitions'"),
        (
            "rlmeta/TabularMDP-v0",
            {"rewards": [[0.0] * 5] * 10, "transitions": [[[0.5] * 10] * 5] * 10},
            "each row summing to 1",
        ),
    ],
)
def test_malformed_task_raises_naming_the_fields(env_id: str, bad: object, named: str) -> None:
    env = make(env_id).unwrapped
    before = env.get_task()
    with pytest.raises(ValueError, match=f"^task must be a dict with .*{named}"):
        env.set_task(bad)
    assert env.get_task() == before  # a rejected task leaves the env as it was
