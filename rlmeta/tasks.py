"""The task protocol: how the rest of rlmeta talks to a task-distribution environment.

A task environment is any `gymnasium.Env` whose unwrapped env has
`sample_tasks(n, rng) -> list[task]`, `set_task(task)` and `get_task()`. A task is a small
picklable value (a dict of plain numbers). Nothing here assumes a particular family.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np

PROTOCOL_METHODS = ("sample_tasks", "set_task", "get_task")


def make_task_env(env: str, **kwargs: Any) -> gym.Env:
    """Build a task environment from a gymnasium id or `module:Class`, checked for the protocol.

    A class is constructed with `kwargs`; an id goes through `gymnasium.make` without the passive
    env checker, which costs time on every step (tests run `check_env` instead).
    """
    if not isinstance(env, str) or not env:
        raise ValueError(f"env must be a gymnasium id or 'module:Class', got {env!r}")
    instance = _make_from_class(env, kwargs) if ":" in env else _make_from_id(env, kwargs)
    try:
        task_env(instance)
    except TypeError as error:
        instance.close()
        raise ValueError(f"env {env!r}: {error}") from None
    return instance


def _make_from_id(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    if env_id not in gym.registry:
        known = sorted(i for i in gym.registry if i.startswith("rlmeta/"))
        raise ValueError(
            f"unknown env id {env_id!r}; expected a registered gymnasium id (rlmeta families: "
            f"{', '.join(known)}) or 'module:Class'"
        )
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except TypeError as error:
        raise ValueError(f"env {env_id!r} rejected its kwargs {kwargs!r}: {error}") from None


def _make_from_class(path: str, kwargs: dict[str, Any]) -> gym.Env:
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"env {path!r} must be 'module:Class' with both parts non-empty")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"env {path!r}: cannot import module {module_name!r} ({error})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, gym.Env):
        raise ValueError(
            f"env {path!r}: module {module_name!r} has no gymnasium.Env subclass {class_name!r}"
        )
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"env {path!r} rejected its kwargs {kwargs!r}: {error}") from None


def has_task_splits(env: str) -> bool:
    """Whether the env class declares its own task splits (a `task_splits` attribute, e.g.
    Meta-World's train and test tasks), chosen with its `split` keyword argument."""
    cls = _env_class(env)
    return bool(getattr(cls, "task_splits", ()))


def _env_class(env: str) -> Any:
    """The class a gymnasium id or `module:Class` names, without building it; None if unknown."""
    target: Any = env
    if ":" not in env:
        if env not in gym.registry:
            return None
        target = gym.registry[env].entry_point
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            return None
    return target


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
    inner = task_env(env)
    tasks = inner.sample_tasks(n, rng)
    if not isinstance(tasks, list | tuple) or len(tasks) != n:
        got = f"{len(tasks)} tasks" if isinstance(tasks, list | tuple) else _short(tasks)
        raise ValueError(
            f"env {type(inner).__name__}: sample_tasks({n}, rng) returned {got}; expected a "
            f"list of {n} tasks"
        )
    return list(tasks)


def set_task(env: gym.Env, task: Any) -> None:
    """Set the task of `env` (through any wrappers)."""
    task_env(env).set_task(task)


def get_task(env: gym.Env) -> Any:
    """The current task of `env` (through any wrappers)."""
    return task_env(env).get_task()


def _short(value: Any, limit: int = 80) -> str:
    text = f"{value!r} ({type(value).__name__})"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_task(task: Any) -> str:
    """A short human-readable form of a task for logs and error messages."""
    if isinstance(task, dict):
        parts = []
        for key, value in task.items():
            array = np.asarray(value)
            if array.size > 4:
                text = f"<{array.dtype}{list(array.shape)}>"
            elif array.dtype.kind == "f":
                text = (
                    np.array2string(array, precision=3, separator=",")
                    if array.ndim
                    else f"{float(array):.3f}"
                )
            else:
                text = str(value)
            parts.append(f"{key}={text}")
        return "{" + ", ".join(parts) + "}"
    return repr(task)
