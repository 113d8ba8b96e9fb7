"""The Python API: train a run, load a trained policy, evaluate a checkpoint.

    import rlmeta
    rlmeta.train("experiments/maml_navigation.yaml", "runs/nav", overrides={"iterations": 20})
    policy = rlmeta.load("runs/nav")             # newest checkpoint; a .pt file works too
    agent = policy.adapt(env, task=task)          # MAML: inner steps; RL²: a new trial
    action = agent.act(observation)               # then agent.observe(reward, terminated, ...)

The CLI's `rlmeta train` and `rlmeta evaluate` run the same functions. `docs/python-api.md` has
the Gymnasium loop and what each call does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlmeta import checkpoint
from rlmeta.config import ConfigError, ExperimentConfig
from rlmeta.config_io import config_from_dict, config_to_dict, load_config
from rlmeta.inference import Policy
from rlmeta.run import build
from rlmeta.run import train as training
from rlmeta.run.evaluation import evaluate
from rlmeta.run.train import Callback

__all__ = ["evaluate", "load", "make_config", "train"]  # evaluate: `rlmeta evaluate`'s function


def make_config(
    config_or_path: ExperimentConfig | Mapping[str, Any] | str | Path,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """A validated config from a YAML file, a mapping or a config, with `overrides` (dotted
    keys, e.g. `{"maml.inner_lr": 0.05}`) set on top."""
    if isinstance(config_or_path, ExperimentConfig):
        data = config_to_dict(config_or_path)
    elif isinstance(config_or_path, Mapping):
        data = dict(config_or_path)
    elif isinstance(config_or_path, str | Path):
        data = config_to_dict(load_config(config_or_path))
    else:
        raise ConfigError(f"config must be an ExperimentConfig, a mapping or a YAML path, got "
                          f"{type(config_or_path).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(data, str(key), value)
    return config_from_dict(data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = data
    for depth, part in enumerate(sections):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(sections[:depth + 1])!r} is a value, "
                              f"not a section")
        node[part] = child = dict(child)
        node = child
    node[last] = value


def train(
    config_or_path: ExperimentConfig | Mapping[str, Any] | str | Path,
    run_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train (or with `resume`, continue) a run in `run_dir`; returns the last metrics row.

    Each callback gets every iteration's row (the scalars written to `metrics.jsonl`) and can end
    the session by returning False; the run stays resumable. With `resume`, the config must be
    the run's own (`make_config` of its `config.yaml`). A new run refuses a `run_dir` that is not
    empty unless `overwrite` (as `rlmeta train --overwrite`).
    """
    config = make_config(config_or_path, overrides)
    return training.train(config, run_dir, resume=resume, stop_after=stop_after,
                          callbacks=callbacks, overwrite=overwrite)


def load(checkpoint_or_run_dir: str | Path, seed: int = 0) -> Policy:
    """The policy of a checkpoint file, or of a run directory's newest checkpoint (what `rlmeta
    evaluate` reads), ready to `adapt` and `act`; `seed` seeds its action sampling."""
    path = checkpoint.resolve_checkpoint(checkpoint_or_run_dir)
    state = checkpoint.load_checkpoint(path)
    config = config_from_dict(state["config"])
    algorithm = build.build_algorithm(config, "cpu")
    algorithm.load_state_dict(state["runtime"]["algorithm"])
    if not callable(getattr(algorithm, "inference_policy", None)):
        raise TypeError(f"algorithm {config.algorithm!r} ({type(algorithm).__name__}) has no "
                        f"inference_policy; expected the Algorithm contract's method for load")
    return algorithm.inference_policy(seed)
