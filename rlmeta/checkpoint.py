"""Checkpoints: tensors and plain data only, written atomically, verified on load.

A checkpoint is one dict that `torch.load(path, weights_only=True)` reads: a format marker and
version, the algorithm and env it belongs to, the config as plain data, the runtime state
(algorithm state incl. optimiser, weights version), the iteration count, cumulative env steps,
the driver's task-sampler RNG state, and the sha256 digest of all of that. `load_checkpoint`,
the one way rlmeta reads a checkpoint (resume, evaluate, `init_from`, benchmarks), recomputes
the digest: a file changed after it was written is refused, whatever torch makes of it (torch
reads tensor bytes without looking at the zip's checksums). Files live in
`<run_dir>/checkpoints/`: `ckpt_<iteration>.pt` (the last few) and `best.pt`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "rlmeta-checkpoint"
VERSION = 2  # 1: before the content digest and the algorithm and env entries
DIGEST_KEY = "sha256"
REQUIRED_KEYS = ("algorithm", "env", "config", "runtime", "iteration", "env_steps", "rng_state")
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
        "algorithm": config.get("algorithm"),
        "env": config.get("env"),
        "config": config,
        "runtime": runtime_state,
        "iteration": int(iteration),
        "env_steps": int(env_steps),
        "rng_state": rng_state,
        **(extra or {}),
    }


def content_digest(checkpoint: dict[str, Any]) -> str:
    """sha256 over a canonical serialisation of everything in `checkpoint` but the digest
    itself: types, shapes, dtypes and bytes of tensors, mapping keys in sorted order."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in checkpoint.items() if key != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype.str}{value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, bytes):
        digest.update(f"Y{len(value)}:".encode() + value)
    elif isinstance(value, float):
        digest.update(f"F{value.hex()};".encode())
    elif isinstance(value, str):
        encoded = value.encode("utf-8", "surrogatepass")
        digest.update(f"S{len(encoded)}:".encode() + encoded)
    else:  # None, bool, int and torch's small plain types (dtype, device, Size)
        digest.update(f"{type(value).__name__}({value!r});".encode())


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write atomically, with the content digest: a temp file in the same directory, fsync,
    then `os.replace`."""
    path = Path(path)
    checkpoint = {**checkpoint, DIGEST_KEY: content_digest(checkpoint)}
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
    if checkpoint.get("version") == 1:
        # Refused rather than read with a warning: a file that cannot be verified is exactly
        # what could train or evaluate on flipped bytes without a word.
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version 1, written before checkpoints carried "
            f"a digest of their contents; this rlmeta reads version {VERSION} only, which it can "
            f"verify (retrain, or evaluate it with the rlmeta that wrote it)"
        )
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {checkpoint.get('version')!r}; "
            f"this rlmeta reads version {VERSION}"
        )
    stored = checkpoint.pop(DIGEST_KEY, None)
    if stored is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {DIGEST_KEY} digest of its "
                              f"contents; expected one in every version-{VERSION} checkpoint")
    if stored != content_digest(checkpoint):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its contents do not match the {DIGEST_KEY} "
            f"digest stored in it (the file changed after it was written)"
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is missing {', '.join(missing)}")
    if not isinstance(checkpoint["config"], dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is a "
                              f"{type(checkpoint['config']).__name__}; expected a mapping")
    return checkpoint


def check_belongs(
    checkpoint: dict[str, Any], path: str | Path, config: dict[str, Any], where: str
) -> None:
    """Refuse a checkpoint of another algorithm or env than `config` (the run's, read from
    `where`, e.g. "config.yaml of runs/x"): a foreign file among a run's checkpoints."""
    theirs = (checkpoint.get("algorithm"), checkpoint.get("env"))
    mine = (config.get("algorithm"), config.get("env"))
    if theirs != mine:
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to another run: algorithm {theirs[0]!r} on env "
            f"{theirs[1]!r}, but {where} has algorithm {mine[0]!r} on env {mine[1]!r}; "
            f"expected a checkpoint of this run"
        )


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
