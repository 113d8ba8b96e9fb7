"""Wrappers over task environments.

`TaskInObservation` builds the "oracle" of Finn et al. 2017 (§5.3): a policy that is told the
task because the task's numbers are part of every observation. The task protocol stays on the
unwrapped env (`sample_tasks`, `set_task`, `get_task` reach it through `env.unwrapped`), so the
wrapper reads the current task from there at every reset rather than keeping its own copy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def task_features(task: Any) -> np.ndarray:
    """The numbers of a task, flattened in the task's own key order, as float32.

    A task is a dict of numbers or nested lists/arrays of numbers; anything else (a string such as
    a Meta-World env name) has no numeric form and is an error.
    """
    if not isinstance(task, dict) or not task:
        raise ValueError(f"task {task!r} is not a non-empty dict; expected {{name: numbers}}")
    parts = []
    for key, value in task.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"task value {key!r}={value!r} is not numeric; expected numbers to append to "
                f"the observation"
            )
        parts.append(array.astype(np.float32).ravel())
    return np.concatenate(parts)


class TaskInObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the current task's values (`task_features`) to a flat Box observation.

    Give either `env`, a task environment, or `wrapped`, the gymnasium id of one (made with
    `wrapped_kwargs`); the latter lets a config name the wrapper as
    `env: rlmeta_envs.wrappers:TaskInObservation` with
    `env_kwargs: {wrapped: rlmeta/Navigation2D-v0, wrapped_kwargs: {...}}`.
    """

    def __init__(
        self,
        env: gym.Env | None = None,
        *,
        wrapped: str | None = None,
        wrapped_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if (env is None) == (wrapped is None):
            raise ValueError(
                "TaskInObservation needs exactly one of env (an Env) or wrapped (an env id)"
            )
        if env is None:
            env = gym.make(wrapped, disable_env_checker=True, **(wrapped_kwargs or {}))
        elif wrapped_kwargs:
            raise ValueError("wrapped_kwargs is only used with wrapped (an env id), not with env")
        # Nothing to record: gymnasium re-creates the inner env from its own spec, then wraps it.
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"TaskInObservation needs a flat Box observation space, got {space}"
            )
        get_task = getattr(env.unwrapped, "get_task", None)
        if not callable(get_task):
            raise ValueError(
                f"{type(env.unwrapped).__name__} is not a task environment: no get_task"
            )
        size = task_features(get_task()).size
        # Task values are bounded by their family's range, which the wrapper does not know.
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([space.low, np.full(size, -np.inf)]).astype(np.float32),
            high=np.concatenate([space.high, np.full(size, np.inf)]).astype(np.float32),
            dtype=np.float32,
        )
        self._features = np.zeros(size, dtype=np.float32)

    def _observation(self, obs: Any) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32), self._features])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        # set_task goes straight to the unwrapped env, so the task is read here, once an episode.
        features = task_features(self.env.unwrapped.get_task())
        if features.shape != self._features.shape:
            raise ValueError(
                f"task has {features.size} values; expected {self._features.size} as at "
                f"construction"
            )
        self._features = features
        return self._observation(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(obs), reward, terminated, truncated, info
