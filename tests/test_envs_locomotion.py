"""MuJoCo HalfCheetah and Ant task families: checker, reward semantics, reproducibility."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import rlmeta  # noqa: F401  (registers the families)
from rlmeta_envs.testing import check_reproducible, check_task_env

FAMILY_IDS = [
    "rlmeta/HalfCheetahVel-v0",
    "rlmeta/HalfCheetahDir-v0",
    "rlmeta/AntVel-v0",
    "rlmeta/AntDir-v0",
]


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, disable_env_checker=True, **kwargs)


def step_from_seed(env: gym.Env, task: dict, action: np.ndarray) -> tuple[float, dict]:
    """Reward and info of one step from the state a seeded reset gives, under `task`."""
    env.unwrapped.set_task(task)
    env.reset(seed=4)
    _, reward, _, _, info = env.step(action)
    return float(reward), info


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_check_env_under_several_tasks(env_id: str) -> None:
    tasks = check_task_env(make(env_id, horizon=20), n_tasks=3, seed=1)
    assert len(tasks) == 3


@pytest.mark.parametrize("env_id", ["rlmeta/HalfCheetahVel-v0", "rlmeta/AntVel-v0"])
def test_velocity_goal_changes_only_the_velocity_term(env_id: str) -> None:
    env = make(env_id)
    action = np.linspace(-0.8, 0.8, env.action_space.shape[0]).astype(np.float32)
    r_slow, info = step_from_seed(env, {"velocity": 0.3}, action)
    r_fast, info_fast = step_from_seed(env, {"velocity": 1.7}, action)
    v = info["x_velocity"]
    assert v == info_fast["x_velocity"]  # same state and action: same motion
    assert r_slow - r_fast == pytest.approx(abs(v - 1.7) - abs(v - 0.3), abs=1e-9)
    assert r_slow != r_fast


def test_cheetah_velocity_reward_is_exact() -> None:
    env = make("rlmeta/HalfCheetahVel-v0")
    action = np.full(6, 0.5, dtype=np.float32)
    reward, info = step_from_seed(env, {"velocity": 1.0}, action)
    expected = -abs(info["x_velocity"] - 1.0) - 0.05 * float(np.sum(action**2))
    assert reward == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("env_id", ["rlmeta/HalfCheetahDir-v0", "rlmeta/AntDir-v0"])
def test_direction_flips_the_sign_of_the_velocity_term(env_id: str) -> None:
    env = make(env_id)
    action = np.linspace(0.9, -0.9, env.action_space.shape[0]).astype(np.float32)
    r_forward, info = step_from_seed(env, {"direction": 1}, action)
    r_backward, _ = step_from_seed(env, {"direction": -1}, action)
    v = info["x_velocity"]
    assert abs(v) > 1e-3
    assert r_forward - r_backward == pytest.approx(2 * v, abs=1e-9)
    assert info["reward_forward"] == pytest.approx(v, abs=1e-12)


def test_ant_reward_terms() -> None:
    env = make("rlmeta/AntDir-v0")
    action = np.full(8, 0.3, dtype=np.float32)
    reward, info = step_from_seed(env, {"direction": 1}, action)
    assert info["reward_ctrl"] == pytest.approx(-0.005 * float(np.sum(action**2)))
    expected = info["x_velocity"] + info["reward_ctrl"] + info["reward_contact"] + 0.05
    assert reward == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_seeded_reset_reproduces_and_horizon_truncates(env_id: str) -> None:
    env = make(env_id, horizon=15)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1, np.random.default_rng(2))[0])
    rng = np.random.default_rng(0)
    actions = list(rng.uniform(-1, 1, size=(20, env.action_space.shape[0])).astype(np.float32))
    check_reproducible(env, seed=8, actions=actions)
    env.reset(seed=1)
    ends = [env.step(np.zeros(env.action_space.shape, dtype=np.float32))[2:4] for _ in range(15)]
    assert ends[-1] == (False, True) and all(end == (False, False) for end in ends[:-1])


def test_default_horizon_is_200_and_pickle_keeps_the_task() -> None:
    env = make("rlmeta/HalfCheetahVel-v0").unwrapped
    assert env.horizon == 200
    env.set_task({"velocity": 1.25})
    copy = pickle.loads(pickle.dumps(env))
    assert copy.get_task() == {"velocity": 1.25} and copy.horizon == 200


@pytest.mark.parametrize(
    ("env_id", "bad", "named"),
    [
        ("rlmeta/HalfCheetahVel-v0", {"velocity": 2.5}, "'velocity' \\(a float in \\[0.0, 2.0\\]"),
        ("rlmeta/HalfCheetahVel-v0", {"goal_vel": 1.0}, "'velocity'"),
        ("rlmeta/AntVel-v0", {"velocity": "fast"}, "'velocity' \\(a float in \\[0.0, 3.0\\]\\)"),
        ("rlmeta/HalfCheetahDir-v0", {"direction": 0}, "'direction' \\(-1 or 1\\)"),
        ("rlmeta/AntDir-v0", {"direction": True}, "'direction' \\(-1 or 1\\)"),
    ],
)
def test_malformed_task_raises_naming_the_fields(env_id: str, bad: dict, named: str) -> None:
    env = make(env_id).unwrapped
    with pytest.raises(ValueError, match=f"^task must be a dict with key {named}"):
        env.set_task(bad)


def test_sample_tasks_ranges_and_determinism() -> None:
    vel = make("rlmeta/AntVel-v0").unwrapped.sample_tasks(200, np.random.default_rng(0))
    speeds = [t["velocity"] for t in vel]
    assert 0.0 <= min(speeds) < 0.2 and 2.8 < max(speeds) <= 3.0
    direction = make("rlmeta/HalfCheetahDir-v0").unwrapped
    dirs = direction.sample_tasks(50, np.random.default_rng(0))
    assert {t["direction"] for t in dirs} == {-1, 1}
    assert dirs == direction.sample_tasks(50, np.random.default_rng(0))
