"""A run directory has one writer at a time, and a new run never writes over an earlier one.

`claim(run_dir, ...)` is taken by `train` and `resume` before anything is written and held for
the run's life: an exclusive `flock` on `<run_dir>/.lock`, which the kernel releases when the
process ends however it ends, so a crashed or killed run never leaves the directory stuck. The
file names the holder (pid and host) for the error a second writer gets.

A new run needs a directory that is absent or empty. One with a run's files (`config.yaml`,
`metrics.jsonl`, TensorBoard events, checkpoints: a finished run, or one that stopped before its
first checkpoint) or with anything else in it is refused, unless the caller passes
`overwrite=True` (`rlmeta train --overwrite`): then the earlier run's files are deleted, and
other files are left where they are. Resume needs the run's checkpoints and takes the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

from rlmeta import checkpoint, metrics
from rlmeta.config import ExperimentConfig
from rlmeta.config_io import read_config_file

LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
EVAL_PREFIX = "eval-"  # rlmeta evaluate's default output folders
RUN_FILES = (CONFIG_FILE, metrics.METRICS_FILE, metrics.TENSORBOARD_DIR, checkpoint.CHECKPOINT_DIR)


class RunDirError(Exception):
    """A run directory that another process is writing, or that holds what a new run would
    overwrite; the message is one line."""


class RunLock:
    """Exclusive ownership of a run directory until `release` (or the process ends)."""

    def __init__(self, run_dir: Path, handle: int, created: bool) -> None:
        self.run_dir, self._handle, self._created = run_dir, handle, created

    def release(self, discard: bool = False) -> None:
        """Give the directory up; `discard` also removes it when this claim created it and
        nothing but the lock file was written (a run that could not start leaves nothing)."""
        if self._handle < 0:
            return
        if discard and self._created and _contents(self.run_dir) == []:
            (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
            self.run_dir.rmdir()
        os.close(self._handle)  # closing the file releases the flock
        self._handle = -1


def claim(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Take `run_dir` for a new run (or, with `resume`, for continuing the run in it).

    The contents are checked before the directory is created and again under the lock, as
    another run may have written between the two.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} is a file; expected a directory")
    if resume or not overwrite:
        check_contents(run_dir, resume)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(handle)
        os.close(handle)
        raise RunDirError(
            f"run directory {str(run_dir)!r} is in use by {holder}; wait for that run to end "
            f"or choose another --run-dir"
        ) from None
    lock = RunLock(run_dir, handle, created)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        if overwrite and not resume:
            remove_run_files(run_dir)
        else:
            check_contents(run_dir, resume)
    except BaseException:
        lock.release(discard=True)
        raise
    return lock


def check_contents(run_dir: Path, resume: bool) -> None:
    """Refuse a directory a new run would write over, or one without a run to resume."""
    if resume:
        checkpoint.latest_checkpoint(run_dir)  # a one-line error when there is none
        return
    if checkpoint.list_checkpoints(run_dir):
        raise RunDirError(
            f"run directory {str(run_dir)!r} already has checkpoints; continue it with "
            f"`rlmeta resume {run_dir}`, replace it with --overwrite, or choose another --run-dir"
        )
    found = _contents(run_dir)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise RunDirError(
            f"run directory {str(run_dir)!r} is not empty ({shown}) and holds no checkpoint to "
            f"resume; pass --overwrite to delete an earlier run's files there (others are kept) "
            f"or choose another --run-dir"
        )


def remove_run_files(run_dir: Path) -> list[str]:
    """Delete what an earlier run wrote in `run_dir` (never the lock, never other files)."""
    removed = []
    for path in sorted(run_dir.iterdir()):
        if path.name in RUN_FILES or path.name.startswith(EVAL_PREFIX):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
    return removed


def check_in_its_run(state: dict, path: str | Path) -> None:
    """A checkpoint in `<run>/checkpoints/` beside a config.yaml must be of that run's algorithm
    and env: evaluate, resume and `init_from` refuse a foreign file dropped among them."""
    path = Path(path)
    file = path.parent.parent / CONFIG_FILE
    if path.parent.name != checkpoint.CHECKPOINT_DIR or not file.is_file():
        return
    data = read_config_file(file)
    fields = ExperimentConfig.model_fields
    config = {key: data.get(key, fields[key].default) for key in ("algorithm", "env")}
    checkpoint.check_belongs(state, path, config, f"{str(file)!r}")


def _read_holder(handle: int) -> str:
    """Who holds the lock, as the holder wrote it. A run that has just taken the lock writes
    its pid a moment later, so an empty file is read again briefly before giving up."""
    for _ in range(20):
        holder = os.pread(handle, 200, 0).decode(errors="replace").strip()
        if holder:
            return holder
        time.sleep(0.05)
    return "another process"


def _contents(run_dir: Path) -> list[str]:
    """Names in `run_dir` besides the lock file, sorted; [] for a missing directory."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
