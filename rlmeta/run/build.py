"""Building envs, algorithms and the picklable factories the runtime ships to its workers.

The algorithm classes are looked up by name when first needed, so importing this module (and the
CLI) never imports torch-heavy algorithm code that a command does not use.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import gymnasium as gym
import torch

from rlmeta import tasks
from rlmeta.algorithm import Algorithm
from rlmeta.config import ExperimentConfig

if TYPE_CHECKING:
    from rlmeta.distributed import Runtime

# config.algorithm -> "module:Class"; a module-level table so tests can point a name at a fake.
ALGORITHM_CLASSES: dict[str, str] = {
    "maml": "rlmeta.maml:MAMLAlgorithm",
    "rl2": "rlmeta.rl2:RL2Algorithm",
}


def build_env(config: ExperimentConfig) -> gym.Env:
    """One task environment as the config names it."""
    return tasks.make_task_env(config.env, **config.env_kwargs)


def algorithm_class(name: str) -> type:
    """The class implementing `config.algorithm`, imported on first use."""
    if name not in ALGORITHM_CLASSES:
        raise ValueError(
            f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHM_CLASSES)}"
        )
    module_name, _, class_name = ALGORITHM_CLASSES[name].partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(
            f"{module_name} does not define {class_name} (algorithm {name!r})"
        ) from None


def build_algorithm(
    config: ExperimentConfig,
    device: str,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    init_seed: int | None = None,
) -> Algorithm:
    """The algorithm of `config` on `device`; spaces are read from a fresh env when not given.

    The initial weights come from a torch RNG seeded with `init_seed` (default: `config.seed`),
    forked so the caller's global RNG is untouched: every process that builds the algorithm from
    the same config starts from the same weights.
    """
    if observation_space is None or action_space is None:
        env = build_env(config)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
    cls = algorithm_class(config.algorithm)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if init_seed is None else init_seed)
        return cls(config, observation_space, action_space, device)


def tasks_per_call(config: ExperimentConfig) -> int:
    """How many task specs one worker call samples together (`Algorithm.run_tasks`).

    RL² runs one trial per env slot, so `envs_per_worker // trials_per_task` tasks fill a
    worker's envs; MAML (and any other algorithm) samples one task per call.
    """
    if config.algorithm != "rl2":
        return 1
    trials = config.rl2.trials_per_task
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"rl2.trials_per_task must be an int >= 1, got {trials!r}")
    return max(1, config.envs_per_worker // trials)


def make_runtime(
    config: ExperimentConfig,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Runtime:
    """The config's runtime (local or Ray) with its algorithm, envs and worker call size."""
    # Imported here: the distributed package pulls in Ray, which only a run needs.
    from rlmeta.distributed import make_runtime as runtime_for

    factory = algorithm_factory(config, observation_space, action_space)
    return runtime_for(config, factory, env_factory(config), tasks_per_call(config))


def env_factory(config: ExperimentConfig) -> Callable[[], gym.Env]:
    """A picklable zero-argument env constructor for the runtime's workers."""
    return functools.partial(build_env, config)


def algorithm_factory(
    config: ExperimentConfig,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Callable[[str], Algorithm]:
    """A picklable `factory(device) -> Algorithm`; pass the spaces to spare workers an env."""
    return functools.partial(
        build_algorithm, config, observation_space=observation_space, action_space=action_space
    )
