"""Experiment configuration: one pydantic schema, each setting's type, range and choices once.

A YAML file in `experiments/` maps onto `ExperimentConfig`; `rlmeta.config_io` reads files and
`--set key=value` overrides. Validation happens here, whether the values come from YAML, an
override or Python (`ExperimentConfig(workers=-3)` raises), on construction and on assignment;
an invalid value is a `ConfigError` whose one-line message names the dotted key and what was
expected.

The core does not know the algorithms: each algorithm's settings live in its own section
(`maml:`, `rl2:`) whose model the algorithm package defines. The algorithm registry
(`rlmeta.run.build`) supplies the sections through `set_section_source`; `import rlmeta` installs
it, so every config holds every registered algorithm's section (with defaults when absent).
"""

from __future__ import annotations

import difflib
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType


class ConfigError(ValueError):
    """A config key or value that does not fit the schema; the message is one line."""


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


# A float setting: ints widen to floats, a string such as "1e-3" (PyYAML reads 1e-3 without a
# dot as a string) is the number it means; bools, NaN and infinities are refused.
Float = Annotated[float, BeforeValidator(_not_a_bool)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Discount = Annotated[Float, Field(gt=0, le=1)]
UnitFloat = Annotated[Float, Field(ge=0, le=1)]


def positive_up_to(limit: int) -> Any:
    """An integer setting in 1..`limit`. Every size has an upper bound, far above real use (each
    field's docstring says why that one), so a typo such as 10**12 iterations is an error naming
    the limit instead of a run that ends when memory does."""
    return Annotated[PositiveInt, Field(le=limit)]


def non_negative_up_to(limit: int) -> Any:
    """An integer setting in 0..`limit` (see `positive_up_to`)."""
    return Annotated[NonNegativeInt, Field(le=limit)]


MAX_ITERATIONS = 1_000_000
"""The longest shipped run has 12,000 iterations."""
MAX_TASKS = 100_000
"""Tasks drawn at once (a meta-batch, an evaluation): shipped configs draw at most 1,200."""
MAX_WIDTH = 16_384
"""Hidden-layer width: one 16,384-square layer is already 1 GB of float32 weights."""


class Settings(BaseModel):
    """Base of every config model: unknown keys, wrong types and non-finite floats are errors,
    on construction and on assignment, reported as a one-line `ConfigError`."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(describe_error(type(self), error)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        before = dict(self.__dict__)
        try:
            super().__setattr__(name, value)
        except ValidationError as error:
            # pydantic has stored the value when a cross-field rule refuses it: undo that.
            object.__setattr__(self, "__dict__", before)
            raise ConfigError(describe_error(type(self), error)) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            raise ConfigError(describe_error(cls, error)) from None


class PolicyConfig(Settings):
    """Network shape shared by the algorithms."""

    hidden_sizes: Annotated[list[positive_up_to(MAX_WIDTH)], Field(max_length=64)] = Field(
        default_factory=lambda: [100, 100])
    """Hidden layer widths of the MLP (MAML) or of the layers before the GRU (RL²); at most 64
    layers of at most 16,384 units (1 GB of float32 weights per layer)."""
    activation: Literal["relu", "tanh"] = "relu"
    """Hidden activation: relu or tanh."""
    init_log_std: Float = 0.0
    """Initial log standard deviation of Gaussian policies (state-independent)."""
    distribution: Literal["auto", "gaussian", "categorical"] = "auto"
    """Action distribution: auto (from the action space), gaussian (Box), categorical (Discrete)."""


@dataclass(frozen=True)
class Section:
    """One registered algorithm's settings: the config key of its section and the model."""

    algorithm: str
    key: str
    model: type[Settings]


SectionSource = Callable[[], list[Section]]
_section_source: SectionSource = list


def set_section_source(source: SectionSource) -> None:
    """Install the registry's `source() -> [Section, ...]` (called by `rlmeta.run.build`)."""
    global _section_source
    _section_source = source


def sections() -> list[Section]:
    """The registered algorithms' sections, in registry order."""
    return _section_source()


# The sections come right after this field in saved configs (config.yaml's order).
_SECTIONS_AFTER = "policy"


class ExperimentConfig(Settings):
    """One experiment: what to train, on which task family, for how long. Each registered
    algorithm adds its section (`config.maml`, `config.rl2`, ...)."""

    model_config = ConfigDict(extra="allow")

    algorithm: StrictStr = "maml"
    """A registered algorithm: maml or rl2 (see `rlmeta.run.build.register_algorithm`)."""
    env: Annotated[StrictStr, Field(max_length=1000)] = "rlmeta/Navigation2D-v0"
    """Gymnasium id or `module:Class` of a task environment."""
    env_kwargs: Annotated[dict[str, Any], Field(max_length=1000)] = Field(default_factory=dict)
    """Keyword arguments for the env constructor (at most 1,000; a constructor takes a few)."""
    iterations: positive_up_to(MAX_ITERATIONS) = 100
    """Meta-iterations to train (at most 1,000,000; the longest shipped run has 12,000)."""
    seed: non_negative_up_to(2**32 - 1) = 0
    """Seed of the driver, the task sampler and every worker's sampling (0..2**32-1, the range
    every RNG it seeds accepts)."""
    init_from: Annotated[StrictStr, Field(max_length=4096)] | None = None
    """Start from the policy weights of this checkpoint (a .pt file or a run dir's newest) of the
    same algorithm and network shape, with a fresh optimiser; None: a random initialisation."""
    checkpoint_every: positive_up_to(MAX_ITERATIONS) = 10
    """Write a checkpoint every this many iterations (and at the end); at most `iterations`'
    limit."""
    keep_checkpoints: positive_up_to(1000) = 3
    """How many recent checkpoints to keep (the best is kept as well); at most 1,000."""
    eval_tasks: positive_up_to(MAX_TASKS) = 40
    """Held-out tasks for `rlmeta evaluate` (at most 100,000; the shipped tables use 1,000)."""
    eval_every: non_negative_up_to(MAX_ITERATIONS) = 0
    """Evaluate on held-out tasks every this many iterations while training, logged as `eval/*`
    (which then picks `best.pt`); 0: never."""
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    """Network shape."""
    workers: non_negative_up_to(10_000) = 2
    """Rollout worker actors (0: sample in the driver process, no Ray); at most 10,000, one CPU
    each (the cluster recipe uses 60)."""
    envs_per_worker: positive_up_to(10_000) = 10
    """Environments each worker steps together with one batched policy forward (at most 10,000;
    shipped configs use up to 256)."""
    address: Annotated[StrictStr, Field(max_length=1000)] | None = None
    """Ray address; None starts a local instance, "auto" joins a running cluster."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Learner device: auto (GPU when the cluster has one), cpu or cuda."""
    learner_cpus: positive_up_to(1024) = 1
    """CPUs the learner actor reserves, and the torch threads it computes with (Ray's rule:
    threads = reserved CPUs); with `workers: 0`, the threads of the one training process. More
    speeds up updates where nothing else runs on the cores; with another busy process on them,
    the extra threads stall each other (docs/cluster.md, "On one machine")."""
    learners: positive_up_to(1000) = 1
    """Learner actors sharing each update, each on a shard of the meta-batch (MAML: tasks; RL²:
    whole trials), summing with torch.distributed (gloo on CPU, NCCL on GPUs); each takes one
    GPU where the cluster has them, `learner_cpus` CPUs otherwise. More than 1 needs workers."""
    mode: Literal["sync", "async"] = "sync"
    """sync: sample iteration v with weights v; async: sample while the learner updates."""
    max_staleness: positive_up_to(100) = 1
    """Async mode: at most this many weight versions between sampling and learning (at most
    100; each is a meta-batch held in flight)."""
    on_env_error: Literal["raise", "drop"] = "raise"
    """raise: stop on an env that raises or returns non-finite values; drop: skip that task."""
    env_step_timeout_s: Annotated[Float, Field(ge=0, le=86_400)] = 60.0
    """Seconds an env reset, step or set_task may take before it counts as an env error
    (handled as `on_env_error` says); 0: no limit; at most a day."""
    max_task_retries: non_negative_up_to(100) = 3
    """Times a task lost with a dead worker is resampled elsewhere before the run stops (at most
    100)."""
    tracking: Literal["tensorboard", "wandb"] = "tensorboard"
    """tensorboard: TensorBoard event files and metrics.jsonl; wandb: those, and Weights &
    Biases syncing the TensorBoard logs (pip install 'rlmeta[wandb]'; WANDB_PROJECT names the
    project, default rlmeta; WANDB_MODE=offline keeps it on disk)."""
    log_every: positive_up_to(MAX_ITERATIONS) = 10
    """When stderr is not a terminal (a cluster job, nohup), print one plain progress line
    every this many iterations (and at the last); a terminal shows a progress bar instead."""

    @model_validator(mode="before")
    @classmethod
    def _validate_sections(cls, data: Any) -> Any:
        """Every registered section validated by its model (defaults when absent); any other
        key that is not a field is an unknown key."""
        if not isinstance(data, Mapping):
            return data
        known = sections()
        registered = {section.key: section for section in known}
        data = dict(data)
        errors: list[InitErrorDetails] = []
        for key in data:
            if key not in cls.model_fields and key not in registered:
                errors.append({"type": "extra_forbidden", "loc": (key,), "input": data[key]})
        if "algorithm" in data and isinstance(data["algorithm"], str):
            names = [section.algorithm for section in known]
            if data["algorithm"] not in names:
                errors.append({
                    "type": PydanticCustomError("choice", "must be one of {choices}",
                                                {"choices": ", ".join(names)}),
                    "loc": ("algorithm",), "input": data["algorithm"],
                })
        for key, section in registered.items():
            value = data.get(key, {})
            if isinstance(value, section.model):
                continue
            try:
                data[key] = section.model.__pydantic_validator__.validate_python(value)
            except ValidationError as error:
                errors.extend(_nested(error, key))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    def __setattr__(self, name: str, value: Any) -> None:
        # A section is an extra attribute, which pydantic stores unvalidated: validate it here.
        for section in sections():
            if section.key == name and not isinstance(value, section.model):
                value = section.model.model_validate(value)
        super().__setattr__(name, value)

    @model_serializer(mode="wrap")
    def _ordered(self, handler: Any) -> dict[str, Any]:
        """Fields in declaration order with the sections after `policy` in registry order, as
        config.yaml shows."""
        plain = handler(self)
        extra = self.__pydantic_extra__ or {}
        out: dict[str, Any] = {}
        for key, value in plain.items():
            if key in extra:
                continue
            out[key] = value
            if key == _SECTIONS_AFTER:
                out.update((s.key, plain[s.key]) for s in sections() if s.key in plain)
        # A section whose algorithm was unregistered since: still saved, after the others.
        out.update((name, plain[name]) for name in extra if name in plain and name not in out)
        return out


def _nested(error: ValidationError, key: str) -> list[InitErrorDetails]:
    """A section's validation errors located under the section's key."""
    details: list[InitErrorDetails] = []
    for item in error.errors():
        detail: InitErrorDetails = {"type": item["type"], "loc": (key, *item["loc"]),
                                    "input": item["input"]}
        if "ctx" in item:
            detail["ctx"] = item["ctx"]
        if item["type"] not in _KNOWN_TYPES:
            detail["type"] = PydanticCustomError(item["type"], item["msg"], item.get("ctx"))
        details.append(detail)
    return details


_KNOWN_TYPES = frozenset(typing.get_args(ErrorType))


def with_changes(config: Settings, **changes: Any) -> Any:
    """A copy of `config` with some settings changed, validated like any config."""
    current = {name: getattr(config, name) for name in type(config).model_fields}
    current.update(config.__pydantic_extra__ or {})
    return type(config).model_validate({**current, **changes})


def all_keys() -> list[str]:
    """Every valid dotted key, e.g. `maml.inner_lr` (sections included)."""
    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            keys.append(prefix + name)
            if _is_model(info.annotation):
                walk(info.annotation, prefix + name + ".")

    walk(ExperimentConfig, "")
    for section in sections():
        keys.append(section.key)
        walk(section.model, section.key + ".")
    return keys


def suggestion(dotted: str) -> str:
    """"; did you mean 'x'?" for the closest valid key, or nothing."""
    if len(dotted) > 100:
        return ""
    keys = all_keys()
    close = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.6)
    if not close:
        # A field put in the wrong section: match on the last part of the name alone.
        leaf = dotted.rsplit(".", 1)[-1]
        by_leaf = {key.rsplit(".", 1)[-1]: key for key in keys}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[leaf_match[0]]] if leaf_match else []
    return f"; did you mean {close[0]!r}?" if close else ""


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 2, 4, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40
MAX_VALUE_CHARS = 120


def short(value: Any) -> str:
    """repr of `value`, abbreviated to at most about `MAX_VALUE_CHARS` characters: an error line
    quoting a 100k-key mapping stays one short line."""
    text = _REPR.repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "..."
    return text


# -- one line from a pydantic ValidationError ----------------------------------------------------


def describe_error(
    model: type[BaseModel], error: ValidationError, prefix: tuple[str, ...] | None = None
) -> str:
    """The first error as one line naming the dotted key and what was expected."""
    item = error.errors(include_url=False)[0]
    loc = tuple(item["loc"])
    if prefix is None:
        prefix = _prefix_of(model)
    dotted = ".".join(str(part) for part in (*prefix, *loc) if not isinstance(part, int))
    kind, value = item["type"], item.get("input")
    if kind == "extra_forbidden":
        return f"unknown config key {short(dotted)}{suggestion(dotted)}"
    if kind == "value_error" and "error" in item.get("ctx", {}):
        return " ".join(str(item["ctx"]["error"]).split())
    if kind == "choice":
        choices = item["ctx"]["choices"]
        return f"config key {dotted!r} must be one of {choices}, got {short(value)}"
    annotation, item_of_list = _annotation_at(model, loc)
    what = f"every item of {dotted!r}" if item_of_list else f"config key {dotted!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{what} must be {_bounds(annotation)}, got {short(value)}"
    if kind == "too_long":
        limit = item.get("ctx", {}).get("max_length")
        return f"config key {dotted!r} holds more than {limit} items, got {short(value)}"
    if kind == "string_too_long":
        limit = item.get("ctx", {}).get("max_length")
        return f"config key {dotted!r} must be at most {limit} characters, got {short(value)}"
    if kind == "too_short":
        return f"config key {dotted!r} must be a non-empty list, got {short(value)}"
    if kind == "finite_number":
        return f"{what} must be a finite number, got {short(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and _is_model(annotation):
        return (f"config key {dotted!r} must be a section (a mapping of its fields), "
                f"got {short(value)}")
    if annotation is None:
        return f"config key {dotted!r}: {item['msg']}"
    return f"{what} must be {_type_name(annotation)}, got {short(value)}"


def _prefix_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The dotted prefix of a section model validated on its own (e.g. ("maml",))."""
    if model is PolicyConfig:
        return ("policy",)
    for section in sections():
        if section.model is model:
            return (section.key,)
    return ()


def _annotation_at(model: type[BaseModel], loc: tuple) -> tuple[Any, bool]:
    """The annotation (with its constraints) of the field at `loc`, and whether the error is on
    an item of a list; None when `loc` names no field."""
    annotation: Any = model
    item_of_list = False
    registered = {section.key: section.model for section in sections()}
    for part in loc:
        base, _ = _unwrap(annotation)
        if isinstance(part, int):
            if typing.get_origin(base) is list:
                annotation, item_of_list = typing.get_args(base)[0], True
            continue
        if _is_model(base):
            if part in base.model_fields:
                info = base.model_fields[part]
                # pydantic moves a field's own constraints (Field(gt=...)) into its metadata.
                annotation = info.annotation
                if info.metadata:
                    annotation = Annotated[(annotation, *info.metadata)]
                item_of_list = False
            elif base is ExperimentConfig and part in registered:
                annotation, item_of_list = registered[part], False
            else:
                return None, item_of_list
        # Other parts are union members or pydantic's tags: the field stays the same.
    return annotation, item_of_list


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(bare type, constraint metadata) of a possibly nested `Annotated`."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for meta in args[1:]:
            metadata.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return annotation, metadata


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


_SIGNS = ((annotated_types.Gt, ">", "gt"), (annotated_types.Ge, ">=", "ge"),
          (annotated_types.Lt, "<", "lt"), (annotated_types.Le, "<=", "le"))


def _bounds(annotation: Any) -> str:
    """E.g. "> 0 and <= 1" from the field's constraints."""
    parts = []
    for meta in _unwrap(annotation)[1]:
        for cls, sign, name in _SIGNS:
            if isinstance(meta, cls):
                parts.append(f"{sign} {_number(getattr(meta, name))}")
    return " and ".join(parts)


def _number(value: Any) -> str:
    """0.0 -> "0", as the bound was written."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


_SINGULAR = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _type_name(annotation: Any) -> str:
    base, _ = _unwrap(annotation)
    origin = typing.get_origin(base)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(base))
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in typing.get_args(base))
    if origin is list:
        item, _ = _unwrap(typing.get_args(base)[0])
        return f"a list of {_PLURAL.get(item, _type_name(item))}"
    if origin is dict:
        return "a mapping"
    if base is type(None):
        return "null"
    if base is Any:
        return "any value"
    return _SINGULAR.get(base, getattr(base, "__name__", str(base)))
