"""Checks a task environment should pass: for this project's tests and for users' own envs."""

from __future__ import annotations

import time
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


FAULTS = (
    "none",
    "hang_step",
    "hang_reset",
    "busy_step",
    "raise_reset",
    "nan_observation",
    "wrong_shape",
    "string_reward",
    "bad_step_result",
    "no_tasks",
    "few_tasks",
)


class FaultyTaskEnv(gym.Env):
    """A 1-D point to move towards a goal on a line, which misbehaves as asked: for testing
    how rlmeta reports and survives a broken user env.

    `fault` (one of `FAULTS`) happens at step `fault_at` of an episode, or at reset, or in
    `sample_tasks`, and only on tasks whose goal is at least `fault_above` (the default,
    -inf: every task), so a test can break some tasks of a meta-batch and keep the rest. A
    hang sleeps for a day; `busy_step` spins in Python instead of sleeping.
    """

    observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, fault: str = "none", fault_at: int = 2, fault_above: float = -np.inf,
                 horizon: int = 5) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}, got {fault!r}")
        self.fault, self.fault_at, self.fault_above = fault, fault_at, fault_above
        self.horizon = horizon
        self.task: dict[str, Any] = {"goal": 0.0}
        self.position = 0.0
        self.t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        tasks = [{"goal": float(g)} for g in rng.uniform(-1.0, 1.0, n)]
        if self.fault == "no_tasks":
            return []
        if self.fault == "few_tasks":
            return tasks[: n - 1]
        return tasks

    def set_task(self, task: dict[str, Any]) -> None:
        self.task = task

    def get_task(self) -> dict[str, Any]:
        return self.task

    def _faulty(self, fault: str) -> bool:
        return self.fault == fault and self.task["goal"] >= self.fault_above

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._faulty("hang_reset"):
            time.sleep(86400)
        if self._faulty("raise_reset"):
            raise RuntimeError("the faulty env could not reset")
        self.position, self.t = 0.0, 0
        return np.array([self.position], np.float32), {}

    def step(self, action: np.ndarray):
        self.position += float(np.clip(action, -1.0, 1.0)[0])
        self.t += 1
        obs = np.array([self.position], np.float32)
        reward: Any = -abs(self.position - self.task["goal"])
        if self.t == self.fault_at:
            if self._faulty("hang_step"):
                time.sleep(86400)
            if self._faulty("busy_step"):
                while True:
                    pass
            if self._faulty("nan_observation"):
                obs = np.array([np.nan], np.float32)
            if self._faulty("wrong_shape"):
                obs = np.zeros(3, np.float32)
            if self._faulty("string_reward"):
                reward = "high"
            if self._faulty("bad_step_result"):
                return obs, reward
        return obs, reward, False, self.t >= self.horizon, {}
