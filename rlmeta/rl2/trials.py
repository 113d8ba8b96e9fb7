"""Stored RL² trials as time-major tensors: what the learner feeds back through the GRU.

Each column of a `Rollout` sampled by `run_task` is one trial. The policy saw, at step t, the
observation s_t with (a_{t-1}, r_{t-1}, d_{t-1}) of the same trial, zeros at the trial's first
step; `previous_inputs` rebuilds exactly those inputs so recomputed log-probabilities match the
ones recorded while sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlmeta.algorithm import TaskResult
from rlmeta.rollout import Rollout

INITIAL_STATE_KEY = "initial_state"
"""`Rollout.extras` key of the `[trials, hidden_size]` state each trial started from."""


@dataclass
class TrialBatch:
    """Trials of a meta-batch, padded to the longest, one column per trial."""

    observations: torch.Tensor  # [T, N, *obs_shape]
    actions: torch.Tensor  # [T, N] or [T, N, act_dim]
    prev_actions: torch.Tensor  # like actions, shifted one step; zeros at t = 0
    prev_rewards: torch.Tensor  # [T, N]
    prev_dones: torch.Tensor  # [T, N] float
    rewards: torch.Tensor  # [T, N]
    mask: torch.Tensor  # [T, N] float: 1 for real steps
    trial_dones: torch.Tensor  # [T, N] bool: true only at the last real step of a trial
    old_log_probs: torch.Tensor  # [T, N]: behaviour policy, recorded while sampling
    initial_states: torch.Tensor  # [N, hidden_size]

    @property
    def num_trials(self) -> int:
        return int(self.mask.shape[1])

    def select(self, trials: torch.Tensor) -> TrialBatch:
        """The sub-batch of whole trials `trials` (column indices)."""
        return TrialBatch(
            **{
                name: value[trials] if name == "initial_states" else value[:, trials]
                for name, value in vars(self).items()
            }
        )


def previous_inputs(
    actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_{t-1}, r_{t-1}, d_{t-1}) per step of time-major trials, zeros at each trial's start."""
    prev_actions = np.zeros_like(actions)
    prev_rewards = np.zeros_like(rewards, dtype=np.float32)
    prev_dones = np.zeros(dones.shape, dtype=np.float32)
    prev_actions[1:] = actions[:-1]
    prev_rewards[1:] = rewards[:-1]
    prev_dones[1:] = dones[:-1]
    return prev_actions, prev_rewards, prev_dones


def trial_end_dones(mask: np.ndarray) -> np.ndarray:
    """True at the last real step of each column: the only place a trial's return stops.

    Episode boundaries inside a trial are not dones for RL²: the hidden state, and so the value,
    carries across them (Duan et al. 2016, §2.2: the objective is the return of the whole trial).
    """
    lengths = mask.sum(axis=0).astype(np.int64)
    if (lengths < 1).any():
        raise ValueError("every RL² trial must have at least one real step; got an empty column")
    dones = np.zeros(mask.shape, dtype=bool)
    dones[lengths - 1, np.arange(mask.shape[1])] = True
    return dones


def _pad_time(array: np.ndarray, horizon: int) -> np.ndarray:
    if array.shape[0] == horizon:
        return array
    padding = np.zeros((horizon - array.shape[0], *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, padding], axis=0)


def _trial_rollout(result: TaskResult) -> Rollout:
    if len(result.rollouts) != 1:
        raise ValueError(
            f"RL² task result {result.index} has {len(result.rollouts)} rollouts; expected "
            f"exactly one (its trials)"
        )
    rollout = result.rollouts[0]
    if INITIAL_STATE_KEY not in rollout.extras:
        raise ValueError(
            f"RL² task result {result.index} has no extras[{INITIAL_STATE_KEY!r}]; expected a "
            f"rollout sampled by RL2Algorithm.run_task"
        )
    return rollout


def collate_trials(results: list[TaskResult], device: torch.device | str = "cpu") -> TrialBatch:
    """Stack the trials of every task result into one `TrialBatch` on `device`."""
    if not results:
        raise ValueError("RL² update needs at least one task result, got an empty list")
    rollouts = [_trial_rollout(result) for result in results]
    horizon = max(r.mask.shape[0] for r in rollouts)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([_pad_time(getattr(r, name), horizon) for r in rollouts], axis=1)

    actions, rewards, dones, mask = cat("actions"), cat("rewards"), cat("dones"), cat("mask")
    prev_actions, prev_rewards, prev_dones = previous_inputs(actions, rewards, dones)
    initial_states = np.concatenate([r.extras[INITIAL_STATE_KEY] for r in rollouts], axis=0)
    if initial_states.shape[0] != mask.shape[1]:
        raise ValueError(
            f"RL² rollouts hold {mask.shape[1]} trials but {initial_states.shape[0]} initial "
            f"states; expected one per trial"
        )

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=device)

    return TrialBatch(
        observations=tensor(cat("observations")),
        actions=tensor(actions),
        prev_actions=tensor(prev_actions),
        prev_rewards=tensor(prev_rewards),
        prev_dones=tensor(prev_dones),
        rewards=tensor(rewards),
        mask=tensor(mask),
        trial_dones=tensor(trial_end_dones(mask)),
        old_log_probs=tensor(cat("log_probs")),
        initial_states=tensor(initial_states.astype(np.float32)),
    )
