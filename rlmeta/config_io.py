"""Loading, validating, overriding and saving experiment configs (YAML <-> `ExperimentConfig`).

A YAML mapping is walked field by field against the dataclasses in `rlmeta.config`; anything
that does not fit is a `ConfigError` naming the dotted key and what was expected (with the closest
valid key for a typo). Validation happens once, here, so the rest of rlmeta trusts the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from rlmeta.config import ExperimentConfig


class ConfigError(ValueError):
    """A config key or value that does not fit `ExperimentConfig`; the message is one line."""


# Values a string field may take, by dotted key.
CHOICES: dict[str, tuple[str, ...]] = {
    "algorithm": ("maml", "rl2"),
    "mode": ("sync", "async"),
    "device": ("auto", "cpu", "cuda"),
    "on_env_error": ("raise", "drop"),
    "policy.activation": ("relu", "tanh"),
    "maml.outer": ("trpo", "ppo", "reptile"),
    "maml.estimator": ("maml", "dice"),
    "maml.fisher": ("exact", "adapted"),
    "rl2.value_network": ("shared", "separate"),
    "rl2.recurrent_cell": ("gru", "layer_norm_gru"),
    "rl2.lr_schedule": ("constant", "linear"),
    "rl2.eval_actions": ("sample", "mode"),
}

# Numeric ranges by dotted key: (low, high, low_inclusive, high_inclusive); None is unbounded.
_POSITIVE = (0, None, False, False)
_NON_NEGATIVE = (0, None, True, False)
_UNIT_OPEN_LOW = (0, 1, False, True)
_UNIT = (0, 1, True, True)
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "iterations": _POSITIVE,
    "seed": _NON_NEGATIVE,
    "checkpoint_every": _POSITIVE,
    "keep_checkpoints": _POSITIVE,
    "eval_tasks": _POSITIVE,
    "workers": _NON_NEGATIVE,
    "envs_per_worker": _POSITIVE,
    "learner_cpus": _POSITIVE,
    "max_staleness": _POSITIVE,
    "max_task_retries": _NON_NEGATIVE,
    "policy.hidden_sizes": _POSITIVE,
    "maml.meta_batch_size": _POSITIVE,
    "maml.episodes_per_task": _POSITIVE,
    "maml.inner_steps": _NON_NEGATIVE,
    "maml.inner_lr": _POSITIVE,
    "maml.gamma": _UNIT_OPEN_LOW,
    "maml.gae_lambda": _UNIT,
    "maml.max_kl": _POSITIVE,
    "maml.cg_iters": _POSITIVE,
    "maml.fisher_step_stride": _POSITIVE,
    "maml.cg_damping": _NON_NEGATIVE,
    "maml.ls_max_steps": _POSITIVE,
    "maml.ls_backtrack_ratio": (0, 1, False, False),
    "maml.ppo_clip": _POSITIVE,
    "maml.ppo_epochs": _POSITIVE,
    "maml.outer_lr": _POSITIVE,
    "maml.eval_inner_lrs": _POSITIVE,
    "rl2.meta_batch_size": _POSITIVE,
    "rl2.trials_per_task": _POSITIVE,
    "rl2.episodes_per_trial": _POSITIVE,
    "rl2.hidden_size": _POSITIVE,
    "rl2.gamma": _UNIT_OPEN_LOW,
    "rl2.gae_lambda": _UNIT,
    "rl2.lr": _POSITIVE,
    "rl2.clip": _POSITIVE,
    "rl2.epochs": _POSITIVE,
    "rl2.minibatches": _POSITIVE,
    "rl2.value_coef": _NON_NEGATIVE,
    "rl2.entropy_coef": _NON_NEGATIVE,
    "rl2.max_grad_norm": _POSITIVE,
    "rl2.reward_scale": _POSITIVE,
}

# Lists that must not be empty.
NON_EMPTY = ("maml.eval_inner_lrs",)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file, apply `key=value` overrides, validate, return the config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {reason}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of keys to values, "
            f"got {type(data).__name__}"
        )
    return config_from_dict(apply_overrides(data, overrides or []))


def parse_override(text: str) -> tuple[str, Any]:
    """`maml.inner_lr=0.05` -> ("maml.inner_lr", 0.05); the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"override {text!r} must have the form key=value, e.g. maml.inner_lr=0.05"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: value {raw!r} is not a YAML value") from None
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `data` with each dotted `key=value` set (intermediate mappings are created)."""
    data = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {text!r}: {prefix!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an `ExperimentConfig` from plain data (missing keys keep defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    return _build(ExperimentConfig, data, prefix="")


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain data (what goes into config.yaml and checkpoints)."""
    return dataclasses.asdict(config)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, in field order, so it can be loaded back unchanged."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def all_keys() -> list[str]:
    """Every valid dotted key, e.g. `maml.inner_lr` (sections included)."""
    keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for name, hint in typing.get_type_hints(cls).items():
            keys.append(prefix + name)
            if dataclasses.is_dataclass(hint):
                walk(hint, prefix + name + ".")

    walk(ExperimentConfig, "")
    return keys


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {dotted!r}{_suggestion(dotted)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key {dotted!r} must be a section (a mapping of its fields), "
                    f"got {value!r}"
                )
            kwargs[key] = _build(hint, value, dotted + ".")
        else:
            kwargs[key] = _check_value(dotted, value, hint)
    return cls(**kwargs)


def _suggestion(dotted: str) -> str:
    keys = all_keys()
    close = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.6)
    if not close:
        # A field put in the wrong section: match on the last part of the name alone.
        leaf = dotted.rsplit(".", 1)[-1]
        by_leaf = {key.rsplit(".", 1)[-1]: key for key in keys}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[leaf_match[0]]] if leaf_match else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_value(key: str, value: Any, hint: Any) -> Any:
    value = _check_type(key, value, hint)
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(
            f"config key {key!r} must be one of {', '.join(CHOICES[key])}, got {value!r}"
        )
    if key in NON_EMPTY and not value:
        raise ConfigError(f"config key {key!r} must be a non-empty list, got {value!r}")
    if key in RANGES and value is not None:
        if isinstance(value, list):
            for item in value:
                _check_range(f"every item of {key!r}", item, RANGES[key])
        else:
            _check_range(f"config key {key!r}", value, RANGES[key])
    return value


def _check_range(what: str, value: float, bounds: tuple) -> None:
    low, high, low_inclusive, high_inclusive = bounds
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        lower = "" if low is None else f"{'>=' if low_inclusive else '>'} {low}"
        upper = "" if high is None else f"{'<=' if high_inclusive else '<'} {high}"
        expected = " and ".join(part for part in (lower, upper) if part)
        raise ConfigError(f"{what} must be {expected}, got {value!r}")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is list:
        item = typing.get_args(hint)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(item, _type_name(item))}"
    if origin is dict:
        return "a mapping"
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any value"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _check_type(key: str, value: Any, hint: Any) -> Any:
    converted = _convert(value, hint)
    if converted is _MISMATCH:
        raise ConfigError(f"config key {key!r} must be {_type_name(hint)}, got {value!r}")
    return converted


_MISMATCH = object()


def _convert(value: Any, hint: Any) -> Any:
    """`value` as the type `hint` describes, or `_MISMATCH`; ints widen to floats, never bools."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            converted = _convert(value, arg)
            if converted is not _MISMATCH:
                return converted
        return _MISMATCH
    if hint is type(None):
        return None if value is None else _MISMATCH
    if origin is list:
        if not isinstance(value, list):
            return _MISMATCH
        (item_hint,) = typing.get_args(hint)
        items = [_convert(item, item_hint) for item in value]
        return _MISMATCH if any(item is _MISMATCH for item in items) else items
    if origin is dict:
        return dict(value) if isinstance(value, dict) else _MISMATCH
    if hint is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if hint is float:
        if isinstance(value, bool):
            return _MISMATCH
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads `1e-3` (no dot) as a string; accept the number it obviously means.
            try:
                return float(value)
            except ValueError:
                return _MISMATCH
        return _MISMATCH
    if hint is str:
        return value if isinstance(value, str) else _MISMATCH
    return value if isinstance(value, hint) else _MISMATCH


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _deep_copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_deep_copy(item) for item in data]
    return data
