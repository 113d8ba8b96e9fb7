"""The task protocol: how the rest of rlmeta talks to a task-distribution environment.

A task environment is any `gymnasium.Env` whose unwrapped env has
`sample_tasks(n, rng) -> list[task]`, `set_task(task)` and `get_task()`. A task is a small
picklable value (a dict of plain numbers). Nothing here assumes a particular family.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

PROTOCOL_METHODS = ("sample_tasks", "set_task", "get_task")


def task_env(env: gym.Env) -> Any:
    """The unwrapped env, checked to implement the task protocol."""
    inner = env.unwrapped
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(inner, m, None))]
    if missing:
        raise TypeError(
            f"{type(inner).__name__} is not a task environment: missing {', '.join(missing)}; "
            f"expected methods {', '.join(PROTOCOL_METHODS)}"
        )
    return inner


def sample_tasks(env: gym.Env, n: int, rng: np.random.Generator) -> list[Any]:
    """Sample `n` tasks; deterministic given `rng`."""
    if n < 1:
        raise ValueError(f"number of tasks must be >= 1, got {n}")
    return list(task_env(env).sample_tasks(n, rng))


def set_task(env: gym.Env, task: Any) -> None:
    """Set the task of `env` (through any wrappers)."""
    task_env(env).set_task(task)


def get_task(env: gym.Env) -> Any:
    return task_env(env).get_task()


def describe_task(task: Any) -> str:
    """A short human-readable form of a task for logs and error messages."""
    if isinstance(task, dict):
        parts = []
        for key, value in task.items():
            array = np.asarray(value)
            if array.size > 4:
                text = f"<{array.dtype}{list(array.shape)}>"
            elif array.dtype.kind == "f":
                text = np.array2string(array, precision=3, separator=",") if array.ndim else f"{float(array):.3f}"
            else:
                text = str(value)
            parts.append(f"{key}={text}")
        return "{" + ", ".join(parts) + "}"
    return repr(task)
