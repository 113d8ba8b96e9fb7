"""Checkpoints: tensors and plain data only, written atomically, validated on load.

A checkpoint is one dict that `torch.load(path, weights_only=True)` reads: a format marker and
version, the config as plain data, the runtime state (algorithm state incl. optimiser, weights
version), the iteration count, cumulative env steps and the driver's task-sampler RNG state.
Files live in `<run_dir>/checkpoints/`: `ckpt_<iteration>.pt` (the last few) and `best.pt`.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "rlmeta-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("config", "runtime", "iteration", "env_steps", "rng_state")
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_NAME = re.compile(r"ckpt_(\d+)\.pt")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, foreign or of another format version."""


def make_checkpoint(
    config: dict[str, Any],
    runtime_state: dict[str, Any],
    iteration: int,
    env_steps: int,
    rng_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict; `iteration` counts completed meta-iterations."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "runtime": runtime_state,
        "iteration": int(iteration),
        "env_steps": int(env_steps),
        "rng_state": rng_state,
        **(extra or {}),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory so os.replace is a rename on one filesystem, never a copy.
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; any problem is a one-line `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, objects outside weights_only
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read (truncated, corrupt or not written by "
            f"rlmeta): {type(error).__name__}: {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an rlmeta checkpoint: expected a dict with format {FORMAT!r}"
        )
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {checkpoint.get('version')!r}; "
            f"this rlmeta reads version {VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is missing {', '.join(missing)}")
    return checkpoint


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"ckpt_{iteration:06d}.pt"


def best_path(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / BEST_NAME


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Periodic checkpoints of a run, oldest first (best.pt excluded)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest periodic checkpoint of a run; a clear error when there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"run directory {str(run_dir)!r} has no checkpoints (expected "
            f"{CHECKPOINT_DIR}/ckpt_<iteration>.pt)"
        )
    return found[-1]


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint file as given, or the newest checkpoint of a run directory."""
    target = Path(target)
    if target.is_dir():
        return latest_checkpoint(target)
    if not target.exists():
        raise CheckpointError(f"{str(target)!r} is neither a run directory nor a checkpoint file")
    return target


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints; returns what was removed."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    stale = list_checkpoints(run_dir)[:-keep]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
