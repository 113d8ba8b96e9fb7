"""The newest published weights: a version number and a handle to them in the object store.

The learner puts each version in the object store once and publishes its handle here; workers
ask for (version, handle) before each task and fetch the weights themselves only when the
version is newer than theirs, so there is never one pickled copy per worker. Under Ray this
class runs as an actor (`rlmeta.distributed.ray_runtime`); the handle is an ObjectRef there and
anything in tests.
"""

from __future__ import annotations

from typing import Any


class ParameterServer:
    """Holds (version, handle) of the newest weights; versions only grow, except by `reset`."""

    def __init__(self) -> None:
        self._version = -1
        self._handle: Any = None

    def publish(self, version: int, handle: Any) -> bool:
        """Record a new version; an older or equal one is ignored (returns False)."""
        if version <= self._version:
            return False
        self._version = version
        self._handle = handle
        return True

    def reset(self, version: int, handle: Any) -> None:
        """Start the versions afresh at `version`, even if older (a restored checkpoint)."""
        if version < 0:
            raise ValueError(f"weights version must be >= 0, got {version}")
        self._version = version
        self._handle = handle

    def latest(self) -> tuple[int, Any]:
        """(version, handle) of the newest weights."""
        if self._version < 0:
            raise RuntimeError("no weights published yet; publish version 0 before sampling")
        return self._version, self._handle

    @property
    def version(self) -> int:
        return self._version
