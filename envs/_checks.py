"""Validation of task values: a malformed task is one clear line naming the expected fields.

Tasks are plain data (dicts of numbers, lists and strings) because they travel through YAML,
JSON and checkpoints; these helpers turn whatever arrived into the exact plain form an env keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

_MAX_REPR = 160


def short_repr(value: Any) -> str:
    """repr cut to one readable fragment: MDP tasks hold hundreds of numbers."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def task_error(expected: str, task: Any) -> ValueError:
    return ValueError(f"task must be a dict with {expected}, got {short_repr(task)}")


def task_fields(task: Any, keys: tuple[str, ...], expected: str) -> Mapping:
    """The task as a mapping with exactly `keys`; unknown keys are typos, not extras."""
    if not isinstance(task, Mapping) or set(task) != set(keys):
        raise task_error(expected, task)
    return task


def as_float(value: Any) -> float | None:
    """A finite real number as a Python float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        # 0-d numpy arrays come back from some JSON/YAML round trips through numpy code.
        if getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None:
            value = value.item()
            if isinstance(value, bool) or not isinstance(value, Real):
                return None
        else:
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def float_in(value: Any, low: float, high: float) -> float | None:
    number = as_float(value)
    return number if number is not None and low <= number <= high else None


def float_list(
    value: Any, length: int, low: float = -math.inf, high: float = math.inf
) -> list[float] | None:
    """A sequence of `length` finite floats in [low, high] as a list, else None."""
    if isinstance(value, str | bytes | Mapping):
        return None
    try:
        items = list(value)
    except TypeError:
        return None
    if len(items) != length:
        return None
    numbers = [float_in(item, low, high) for item in items]
    return None if any(n is None for n in numbers) else numbers  # type: ignore[return-value]


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    modes = metadata.get("render_modes", [])
    if render_mode is not None and render_mode not in modes:
        raise ValueError(
            f"render_mode must be None or one of {', '.join(map(repr, modes))}, got {render_mode!r}"
        )
