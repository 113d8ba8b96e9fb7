"""Starting a run from a saved policy's weights (`init_from`): fine-tuning, curricula, warm starts.

The weights come from any rlmeta checkpoint of the same algorithm whose network has the same
parameter names and shapes: another run's, or a policy a benchmark saved. Everything else starts
fresh (optimiser, learning-rate schedule, update count, task stream), so the run is the config's
own from its first iteration. Checkpoints record what a run started from as plain data (the path,
the env steps that trained those weights, a digest of them), so a result can count every env step
it cost, through a chain of warm starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlmeta import checkpoint
from rlmeta import run_dir as run_dirs

RECORD_KEY = "init_from"  # the checkpoint entry that records a run's starting weights


@dataclass
class InitialWeights:
    """Weights a run starts from, and the record its checkpoints keep of them."""

    weights: dict[str, torch.Tensor]
    record: dict[str, Any]  # checkpoint, env_steps (cumulative), weights_sha256


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """Names a policy by its weights: two seeds of one config can share a step count."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_initial_weights(path: str | Path, algorithm: str) -> InitialWeights:
    """The policy weights of the checkpoint at `path` (a file, or a run dir's newest), which
    must have been trained by `algorithm`."""
    try:
        path = checkpoint.resolve_checkpoint(path)
        state = checkpoint.load_checkpoint(path)
        run_dirs.check_in_its_run(state, path)
    except checkpoint.CheckpointError as error:
        raise checkpoint.CheckpointError(f"init_from: {error}") from None
    return initial_weights_in(state, path, algorithm)


def initial_weights_in(state: dict[str, Any], path: Path, algorithm: str) -> InitialWeights:
    """`read_initial_weights` of a checkpoint already loaded from `path`."""
    trained_by = state["config"].get("algorithm") if isinstance(state["config"], dict) else None
    if trained_by != algorithm:
        raise ValueError(
            f"init_from {str(path)!r}: a checkpoint of algorithm {trained_by!r}; expected one "
            f"of {algorithm!r}"
        )
    try:
        weights = state["runtime"]["algorithm"]["weights"]
    except (KeyError, TypeError):
        raise checkpoint.CheckpointError(
            f"init_from {str(path)!r}: no policy weights in it (expected runtime.algorithm.weights)"
        ) from None
    earlier = state.get(RECORD_KEY)
    # Steps that trained these weights, including those of any policy they started from in turn.
    env_steps = int(state["env_steps"]) + (int(earlier["env_steps"]) if earlier else 0)
    record = {"checkpoint": str(path), "env_steps": env_steps,
              "weights_sha256": weights_digest(weights)}
    return InitialWeights(weights, record)


def fitted_weights(
    current: dict[str, torch.Tensor], initial: InitialWeights
) -> dict[str, torch.Tensor]:
    """`initial`'s weights, in the order of `current` (a fresh policy's), after checking that
    they have the same names and shapes: one check and one message for every caller."""
    missing = sorted(set(current) - set(initial.weights))
    unexpected = sorted(set(initial.weights) - set(current))
    misshapen = [
        f"{name} {tuple(initial.weights[name].shape)} (here {tuple(tensor.shape)})"
        for name, tensor in current.items()
        if name in initial.weights and initial.weights[name].shape != tensor.shape
    ]
    if missing or unexpected or misshapen:
        found = []
        if missing:
            found.append(f"missing {missing}")
        if unexpected:
            found.append(f"unexpected {unexpected}")
        if misshapen:
            found.append(f"misshapen {', '.join(misshapen)}")
        raise ValueError(
            f"init_from {initial.record['checkpoint']!r}: its weights do not fit this config's "
            f"policy ({'; '.join(found)}); expected the same env spaces and network settings"
        )
    return {name: initial.weights[name].clone() for name in current}


def with_initial_weights(runtime_state: dict[str, Any], initial: InitialWeights) -> dict[str, Any]:
    """A fresh run's `runtime_state` with its policy weights replaced by `initial`'s."""
    weights = fitted_weights(runtime_state["algorithm"]["weights"], initial)
    return {**runtime_state, "algorithm": {**runtime_state["algorithm"], "weights": weights}}
