"""Checks a task environment should pass: for this project's tests and for users' own envs."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env


def check_task_env(env: gym.Env, n_tasks: int = 3, seed: int = 0) -> list[Any]:
    """Run gymnasium's `check_env` under `n_tasks` sampled tasks and check the task round trip.

    Checker warnings are raised as errors, except the one about infinite Box bounds (MuJoCo
    observations are unbounded for real). Returns the tasks.
    """
    inner = env.unwrapped
    tasks = inner.sample_tasks(n_tasks, np.random.default_rng(seed))
    again = inner.sample_tasks(n_tasks, np.random.default_rng(seed))
    if tasks != again:
        raise AssertionError("sample_tasks is not deterministic given the rng")
    for task in tasks:
        inner.set_task(task)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity")
            check_env(inner, skip_render_check=True)
        if inner.get_task() != task:
            raise AssertionError(f"get_task() differs from the task given to set_task: {task!r}")
    return tasks


def trajectory(
    env: gym.Env, seed: int, actions: list[Any]
) -> tuple[list[np.ndarray], list[float]]:
    """Observations and rewards of a seeded reset followed by `actions`, resetting when done."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(float(reward))
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


def check_reproducible(env: gym.Env, seed: int, actions: list[Any]) -> None:
    """The same seed and actions give the same observations and rewards."""
    first, second = trajectory(env, seed, actions), trajectory(env, seed, actions)
    if len(first[0]) != len(second[0]) or first[1] != second[1] or not all(
        np.array_equal(a, b) for a, b in zip(first[0], second[0], strict=True)
    ):
        raise AssertionError(f"a reset with seed {seed} and the same actions did not reproduce")
