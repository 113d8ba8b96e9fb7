"""The task protocol: how the rest of rlmeta talks to a task-distribution environment.

A task environment is any `gymnasium.Env` whose unwrapped env has
`sample_tasks(n, rng) -> list[task]`, `set_task(task)` and `get_task()`. A task is a small
picklable value (a dict of plain numbers). Nothing here assumes a particular family.

Envs written for other meta-RL libraries (RLlib's `TaskSettableEnv`, learn2learn's `MetaEnv`,
ProMP) have `sample_tasks(n)` and draw from their own RNG, usually numpy's global one; for
those, each call is seeded from the caller's `rng` (see `sample_tasks`), so runs stay
reproducible.

A config or checkpoint that names an env as `module:Class` names code to import, as a pickle
does. `env_class` keeps that to what the name must run: a module already imported is used as
it is; any other is first found on `sys.path` and its source read without running it, and only
a module whose source binds the class name is imported. The class must be a
`gymnasium.Env` subclass before it is constructed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import math
import random
import sys
import typing
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta.config import short

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
        check_protocol(instance)
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
    entry = gym.registry[env_id].entry_point
    if isinstance(entry, str) and ":" in entry:
        check_kwargs(env_id, env_class(entry), kwargs)
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except TypeError as error:
        raise ValueError(f"env {env_id!r} rejected its kwargs {short(kwargs)}: "
                         f"{short(str(error))}") from None


def _make_from_class(path: str, kwargs: dict[str, Any]) -> gym.Env:
    cls = env_class(path)
    check_kwargs(path, cls, kwargs)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"env {path!r} rejected its kwargs {short(kwargs)}: "
                         f"{short(str(error))}") from None


def env_class(path: str) -> type[gym.Env]:
    """The `gymnasium.Env` subclass `module:Class` names, importing only a module whose source
    defines that name (see the module docstring); a one-line `ValueError` otherwise."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"env {path!r} must be 'module:Class' with both parts non-empty")
    if not class_name.isidentifier():
        raise ValueError(f"env {path!r}: {class_name!r} is not a class name")
    if module_name not in sys.modules:
        _check_source_binds(path, module_name, class_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"env {path!r}: cannot import module {module_name!r} ({error})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, gym.Env):
        raise ValueError(
            f"env {path!r}: module {module_name!r} has no gymnasium.Env subclass {class_name!r}"
        )
    return cls


def _check_source_binds(path: str, module_name: str, class_name: str) -> None:
    """Refuse, without running it, a module whose source does not bind `class_name` anywhere
    (a class, an import or an assignment). Modules without source (extensions) pass."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as error:
        raise ValueError(f"env {path!r}: cannot import module {module_name!r} ({error})") from None
    if spec is None:
        raise ValueError(
            f"env {path!r}: cannot import module {module_name!r} (not found on the module path; "
            f"the current directory is searched only when it is on PYTHONPATH)"
        )
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        return
    try:
        with open(origin, "rb") as file:
            tree = ast.parse(file.read(), filename=origin)
    except (OSError, SyntaxError, ValueError):
        return  # importing reports the problem in its own words
    names = _bound_names(tree)
    if class_name not in names and not names & {"*", "__getattr__"}:
        raise ValueError(
            f"env {path!r}: module {module_name!r} has no gymnasium.Env subclass {class_name!r} "
            f"(its source defines no such name; it was not imported)"
        )


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the source binds anywhere (classes, functions, imports, assignments); "*"
    for a star import and "__getattr__" for a lazy module, which bind names unseen."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


_SIMPLE = (bool, int, float, str)


def check_kwargs(env: str, cls: Any, kwargs: dict[str, Any]) -> None:
    """Refuse a kwarg whose value does not fit the constructor's annotation where that is a
    plain bool, int, float or str: `horizon: 2.7` for `horizon: int` would otherwise become 2."""
    try:
        hints = typing.get_type_hints(cls.__init__)
        parameters = inspect.signature(cls.__init__).parameters
    except Exception:  # annotations this check cannot read: the constructor decides
        return
    for name, value in kwargs.items():
        expected = hints.get(name) if name in parameters else None
        if expected not in _SIMPLE:
            continue
        fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
            fits = fits and math.isfinite(value)
        if not fits:
            kind = {bool: "true or false", int: "an integer", float: "a finite number",
                    str: "a string"}[expected]
            raise ValueError(
                f"env {env!r}: env_kwargs.{name} must be {kind} (the constructor's annotation), "
                f"got {short(value)}"
            )


def has_task_splits(env: str) -> bool:
    """Whether the env class declares its own task splits (a `task_splits` attribute, e.g.
    Meta-World's train and test tasks), chosen with its `split` keyword argument."""
    cls = _env_class(env)
    return bool(getattr(cls, "task_splits", ()))


def evaluation_protocol(env: str) -> Callable[..., dict[str, Any]] | None:
    """The benchmark's own evaluation protocol that the env class declares (an
    `evaluation_protocol` attribute naming `module:function`, e.g. Meta-World's), or None.
    `rlmeta.run.protocol` calls it as `protocol(make_agent, env_kwargs, **settings)`."""
    name = getattr(_env_class(env), "evaluation_protocol", None)
    if name is None:
        return None
    module_name, _, function_name = str(name).partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None) \
        if module_name and function_name else None
    if not callable(function):
        raise ValueError(f"env {env!r} declares evaluation_protocol {name!r}, which names no "
                         f"function; expected 'module:function'")
    return function


def _env_class(env: str) -> Any:
    """The class a gymnasium id or `module:Class` names, without building it; None if unknown."""
    target: Any = env
    if ":" not in env:
        if env not in gym.registry:
            return None
        target = gym.registry[env].entry_point
    if isinstance(target, str):
        try:
            return env_class(target)
        except ValueError:
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


def check_protocol(env: gym.Env) -> Any:
    """`task_env`, and each method callable as the protocol calls it: `sample_tasks(n, rng)` or
    `sample_tasks(n)`, `set_task(task)`, `get_task()`; a `TypeError` naming the one that is not."""
    inner = task_env(env)
    expected = {"sample_tasks": "sample_tasks(n, rng) or sample_tasks(n)",
                "set_task": "set_task(task)", "get_task": "get_task()"}
    fits = {"sample_tasks": _accepts(inner.sample_tasks, 2) or _accepts(inner.sample_tasks, 1),
            "set_task": _accepts(inner.set_task, 1), "get_task": _accepts(inner.get_task, 0)}
    for name, ok in fits.items():
        if not ok:
            signature = _plain_signature(getattr(inner, name))
            raise TypeError(f"{type(inner).__name__}.{name}{signature} does not fit the task "
                            f"protocol; expected {expected[name]}")
    return inner


def _plain_signature(method: Callable[..., Any]) -> inspect.Signature:
    """The signature without annotations: `(n_tasks, rng=None)`."""
    signature = inspect.signature(method)
    empty = inspect.Parameter.empty
    return signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty,
    )


def _accepts(method: Callable[..., Any], count: int) -> bool:
    """Whether `method` can be called with `count` positional arguments (True when its
    signature cannot be read, e.g. a builtin)."""
    try:
        inspect.signature(method).bind(*([None] * count))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def sample_tasks(env: gym.Env, n: int, rng: np.random.Generator) -> list[Any]:
    """Sample `n` tasks; deterministic given `rng`.

    An env whose `sample_tasks` takes only `n` is called with numpy's global RNG, Python's
    `random` and the env's `np_random` all seeded by one integer drawn from `rng`, and those
    RNGs restored afterwards.
    """
    if n < 1:
        raise ValueError(f"number of tasks must be >= 1, got {n}")
    inner = task_env(env)
    if _accepts(inner.sample_tasks, 2):
        drawn = inner.sample_tasks(n, rng)
        call = f"sample_tasks({n}, rng)"
    else:
        drawn = _sample_seeded(inner, n, int(rng.integers(0, 2**31 - 1)))
        call = f"sample_tasks({n})"
    # Envs written for other libraries often return an array of tasks: any sequence will do.
    is_sequence = hasattr(drawn, "__len__") and not isinstance(drawn, str | bytes | dict)
    if not is_sequence or len(drawn) != n:
        got = f"{len(drawn)} tasks" if is_sequence else _short(drawn)
        raise ValueError(
            f"env {type(inner).__name__}: {call} returned {got}; expected a list of {n} tasks"
        )
    return list(drawn)


def _sample_seeded(inner: Any, n: int, seed: int) -> Any:
    numpy_state, python_state = np.random.get_state(), random.getstate()
    # gymnasium keeps the env's generator and its seed in these two attributes.
    own = {key: getattr(inner, key, None) for key in ("_np_random", "_np_random_seed")}
    try:
        np.random.seed(seed)
        random.seed(seed)
        if isinstance(inner, gym.Env):
            inner.np_random = np.random.default_rng(seed)
        return inner.sample_tasks(n)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if isinstance(inner, gym.Env):
            for key, value in own.items():
                setattr(inner, key, value)


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
