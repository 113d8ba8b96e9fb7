"""SIGTERM as a request to stop at the next iteration boundary.

A cluster scheduler preempting a job, or `kill PID`, sends SIGTERM. The iteration under way
finishes, its checkpoint is written and the session ends as `stop_after` would end it, so
`rlmeta resume` continues the run exactly. A second SIGTERM stops at once: the checkpoints and
logs already written stay. Ray's driver turns SIGTERM into `sys.exit`, so the handler is
installed once Ray is up, for the loop only.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any


class StopOnSigterm:
    """While entered (on the main thread), SIGTERM sets `requested`; called with an iteration's
    metrics row, as a training callback, it returns False once a stop is requested."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnSigterm:
        # Python delivers signals to the main thread only; elsewhere there is nothing to catch.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def __call__(self, row: dict[str, Any]) -> bool:
        return not self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True
        print("rlmeta: SIGTERM received; stopping after this iteration, with a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)
