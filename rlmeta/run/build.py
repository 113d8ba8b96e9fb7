"""The algorithm registry, and building envs, algorithms and the picklable factories the
runtime ships to its workers.

`ALGORITHM_CLASSES` is the one registry: `config.algorithm` -> "module:Class". An algorithm is one
package implementing `rlmeta.algorithm.Algorithm` plus one line here (or a
`register_algorithm` call from a plugin or test). The classes are imported when first needed (a
config is validated, a run is built), so importing this module never imports torch-heavy
algorithm code. Importing it gives `rlmeta.config` the registered algorithms' config sections.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import gymnasium as gym

from rlmeta import config as config_schema
from rlmeta import tasks
from rlmeta.config import ExperimentConfig

if TYPE_CHECKING:
    from rlmeta.algorithm import Algorithm
    from rlmeta.distributed import Runtime

# config.algorithm -> "module:Class"; a module-level table so tests can point a name at a fake.
ALGORITHM_CLASSES: dict[str, str] = {
    "maml": "rlmeta.maml:MAMLAlgorithm",
    "rl2": "rlmeta.rl2:RL2Algorithm",
}


def register_algorithm(name: str, target: str) -> None:
    """Make `algorithm: name` in a config mean the class at `target` ("module:Class"), whose
    `config_section` key then holds its settings in every config.

    Ray workers look the class up by name too: call this where the plugin's settings model is
    defined, so a worker that unpickles a config (and so imports that module) registers it.
    """
    module_name, sep, class_name = target.partition(":")
    if not name or not sep or not module_name or not class_name:
        raise ValueError(f"algorithm {name!r}: target must be 'module:Class', got {target!r}")
    ALGORITHM_CLASSES[name] = target


def build_env(config: ExperimentConfig) -> gym.Env:
    """One task environment as the config names it."""
    return tasks.make_task_env(config.env, **config.env_kwargs)


def algorithm_class(name: str) -> type[Algorithm]:
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


def algorithm_of(config: ExperimentConfig) -> type[Algorithm]:
    """The class of the config's algorithm: what the driver asks instead of testing names."""
    return algorithm_class(config.algorithm)


def registered_sections() -> list[config_schema.Section]:
    """Each registered algorithm's config section (key and settings model), in registry order."""
    sections = []
    for name in ALGORITHM_CLASSES:
        cls = algorithm_class(name)
        if cls.config_section in ExperimentConfig.model_fields:
            raise ValueError(f"algorithm {name!r}: config_section {cls.config_section!r} is a "
                             f"setting of every experiment; expected a key of its own")
        sections.append(config_schema.Section(name, cls.config_section, cls.settings_model))
    return sections


config_schema.set_section_source(registered_sections)


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
    import torch

    cls = algorithm_of(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if init_seed is None else init_seed)
        return cls(config, observation_space, action_space, device)


def tasks_per_call(config: ExperimentConfig) -> int:
    """How many task specs one worker call samples together (`Algorithm.run_tasks`)."""
    return algorithm_of(config).tasks_per_call(config)


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
