"""Loading, overriding and saving experiment configs (YAML <-> `ExperimentConfig`).

The schema in `rlmeta.config` validates; anything that does not fit is a `ConfigError` naming
the dotted key and what was expected (with the closest valid key for a typo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rlmeta.config import ConfigError, ExperimentConfig, all_keys

__all__ = [
    "ConfigError",
    "all_keys",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
    "save_config",
]


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
    return ExperimentConfig.model_validate(data)


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain data (what goes into config.yaml and checkpoints)."""
    return config.model_dump()


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, in field order, so it can be loaded back unchanged."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _deep_copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_deep_copy(item) for item in data]
    return data
