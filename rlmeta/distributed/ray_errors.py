"""Errors that come back through Ray, told in one line."""

from __future__ import annotations

from ray.exceptions import RayTaskError

# Error lines quote at most this much of a message raised inside an actor.
MESSAGE_CHARS = 300


def describe_ray_error(error: BaseException) -> str:
    """One line for an error raised through Ray: the exception an actor raised (not Ray's
    wrapper with its remote traceback), its type and the first line of its message."""
    while isinstance(error, RayTaskError) and getattr(error, "cause", None) is not None:
        error = error.cause
    name = type(error).__name__
    if isinstance(error, RayTaskError):
        name = "RayTaskError"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 3] + "..."
    return f"{name}: {text}" if text else name
