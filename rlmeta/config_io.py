"""Loading, overriding and saving experiment configs (YAML <-> `ExperimentConfig`).

The schema in `rlmeta.config` validates; anything that does not fit is a `ConfigError` naming
the dotted key and what was expected (with the closest valid key for a typo).

Files and `--set` values are read with YAML 1.2's core schema, not PyYAML's YAML 1.1 defaults:
`yes`/`no`/`on`/`off` are strings (only `true`/`false` are booleans), `1:30` is a string, not the
sexagesimal 90, `1e-3` is a number, `<<` merge keys and timestamps are plain strings. A key given
twice in one mapping is an error. Before anything is built from a file it is bounded: at most
`MAX_FILE_BYTES` of UTF-8 text, `MAX_NODES` values once aliases are expanded (a few hundred
bytes of nested aliases would otherwise expand to gigabytes), no alias that contains itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rlmeta.config import ConfigError, ExperimentConfig, all_keys, short

__all__ = [
    "ConfigError",
    "all_keys",
    "apply_overrides",
    "changed_keys",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
    "read_yaml",
    "save_config",
]

MAX_FILE_BYTES = 1 << 20
"""An experiment file is a few hundred bytes; a megabyte leaves room for long env_kwargs."""
MAX_NODES = 100_000
"""Values in one document with aliases expanded: about a thousand times a shipped experiment."""

_CORE_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN"),
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
     "-+0123456789"),
    ("tag:yaml.org,2002:float",
     re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
     "-+.0123456789"),
]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, duplicate keys refused."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 16) if text.startswith("0x") else int(text)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):
                raise ConfigError(f"a mapping key must be a plain value, got {short(key)} "
                                  f"(line {key_node.start_mark.line + 1})")
            if key in seen:
                raise ConfigError(f"key {short(key)} is given twice in one mapping (line "
                                  f"{key_node.start_mark.line + 1}); expected each key once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


for _tag, _pattern, _first in _CORE_RESOLVERS:
    _Loader.add_implicit_resolver(_tag, _pattern, list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


class _Dumper(yaml.SafeDumper):
    """Quotes a string that YAML 1.1 or 1.2 would read as something else ("yes", "1e3")."""


for _tag, _pattern, _first in _CORE_RESOLVERS:
    _Dumper.add_implicit_resolver(_tag, _pattern, list(_first))


def read_yaml(text: str, source: str) -> Any:
    """One YAML document as plain data, bounded (see the module docstring); `source` names it
    in errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {short(' '.join(str(error).split()))}"
                          ) from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply; expected a config of sections and "
                          f"values") from None
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    finally:
        loader.dispose()


def _check_size(root: Node) -> None:
    """Count values with aliases expanded, each distinct node once (memoised), refusing cycles
    and documents over `MAX_NODES`."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"an alias refers to a value that contains it (line "
                              f"{node.start_mark.line + 1}); expected a tree of values")
        open_nodes.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise ConfigError(f"expands to more than {MAX_NODES} values (aliases included); "
                              f"expected an experiment config")
        sizes[key] = total
        return total

    size(root)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file, apply `key=value` overrides, validate, return the config."""
    data = read_config_file(path)
    return config_from_dict(apply_overrides(data, overrides or []))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's mapping as plain data: UTF-8 text of at most `MAX_FILE_BYTES`, YAML 1.2."""
    path = Path(path)
    name = f"config file {_quoted(path)}"
    if not path.exists():
        raise ConfigError(f"{name} does not exist")
    if not path.is_file():
        raise ConfigError(f"{name} is not a regular file; expected a YAML file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{name} has {size} bytes; expected an experiment config of at most "
                          f"{MAX_FILE_BYTES} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{name} is not UTF-8 text (byte {raw[error.start]:#04x} at offset "
                          f"{error.start}); expected a YAML file in UTF-8") from None
    if "\x00" in text:
        raise ConfigError(f"{name} holds a NUL character (offset {text.index(chr(0))}; UTF-16 "
                          f"or binary?); expected a YAML file in UTF-8")
    data = read_yaml(text, name)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must hold a mapping of keys to values, "
                          f"got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`maml.inner_lr=0.05` -> ("maml.inner_lr", 0.05); the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"override {short(text)} must have the form key=value, e.g. maml.inner_lr=0.05"
        )
    if len(text.encode()) > MAX_FILE_BYTES:
        raise ConfigError(f"override {short(text)} is longer than {MAX_FILE_BYTES} bytes")
    if not raw.strip():
        return key, ""
    return key, read_yaml(raw, f"override {short(text)}: value")


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
                raise ConfigError(f"override {short(text)}: {prefix!r} is a value, not a section")
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
    Path(path).write_text(dump_yaml(config_to_dict(config)), encoding="utf-8")


def dump_yaml(data: Any) -> str:
    """YAML that `read_yaml` (and a YAML 1.1 reader) reads back as `data`."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def changed_keys(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs, sorted (sections walked)."""
    changed = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key != "env_kwargs":
            changed.extend(changed_keys(old, new, f"{prefix}{key}."))
        elif old != new or type(old) is not type(new):
            changed.append(f"{prefix}{key}")
    return changed


def _quoted(path: Path) -> str:
    """A file name for an error line, in full unless absurdly long."""
    text = str(path)
    return repr(text) if len(text) <= 300 else repr(text[:300]) + "..."


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _deep_copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_deep_copy(item) for item in data]
    return data
