"""`RecurrentActor`: the RL² policy as an `rlmeta.rollout.Actor`, one hidden state per env slot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlmeta.rl2.config import ACTION_MODES
from rlmeta.rl2.policy import RecurrentPolicy, mode_actions, sample_actions


class RecurrentActor:
    """Steps a `RecurrentPolicy` for a batch of env slots without gradients.

    `sample_rollout` calls `start_sequences` only when a slot begins a new trial, so the hidden
    state of a slot carries across the episodes of its trial. The state every trial started from
    is recorded in the order trials were started (the sampler's sequence order), so the learner
    can recompute each trial from exactly that state.

    `actions="mode"` acts on the most probable action instead of sampling: for evaluation only
    (training needs the sampled actions and their log-probabilities).
    """

    def __init__(
        self, policy: RecurrentPolicy, generator: torch.Generator, actions: str = "sample"
    ) -> None:
        if actions not in ACTION_MODES:
            raise ValueError(f"actions must be one of {', '.join(ACTION_MODES)}, got {actions!r}")
        self.policy = policy
        self.generator = generator
        self.actions = actions
        self._state: torch.Tensor | None = None
        self._initial_states: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    @property
    def hidden_state(self) -> torch.Tensor:
        """A copy of the current hidden state of every slot, `[slots, hidden_size]`."""
        if self._state is None:
            raise RuntimeError("RecurrentActor has no state yet: call start_sequences first")
        return self._state.detach().cpu().clone()

    def initial_states(self) -> np.ndarray:
        """The start state of each trial begun so far, in start order, `[trials, hidden_size]`."""
        if not self._initial_states:
            return np.zeros((0, self.policy.hidden_size), dtype=np.float32)
        return torch.stack(self._initial_states).cpu().numpy()

    def start_sequences(self, slots: np.ndarray) -> None:
        """Begin a new trial in each of `slots`: their hidden state becomes the initial state."""
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size == 0:
            return
        if slots.min() < 0:
            raise ValueError(f"slot indices must be >= 0, got {slots.tolist()}")
        needed = int(slots.max()) + 1
        if self._state is None or self._state.shape[0] < needed:
            grown = self.policy.initial_state(needed, self.device)
            if self._state is not None:
                grown[: self._state.shape[0]] = self._state
            self._state = grown
        initial = self.policy.initial_state(slots.size, self.device)
        index = torch.as_tensor(slots, device=self.device)
        self._state[index] = initial
        self._initial_states.extend(initial.unbind(0))

    @torch.no_grad()
    def act(
        self,
        observations: np.ndarray,
        prev_actions: np.ndarray,
        prev_rewards: Sequence[float],
        prev_dones: Sequence[float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """One step for every slot: (actions, log-probabilities), advancing each slot's state."""
        batch = observations.shape[0]
        if self._state is None or self._state.shape[0] < batch:
            started = 0 if self._state is None else self._state.shape[0]
            raise ValueError(
                f"act called for {batch} slots but only {started} were started with "
                f"start_sequences; expected every slot to be started first"
            )
        device = self.device

        def step_major(values: np.ndarray | Sequence[float], dtype: Any = None) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=dtype), device=device).unsqueeze(0)

        distribution, _, state = self.policy(
            step_major(observations),
            step_major(prev_actions),
            step_major(prev_rewards, np.float32),
            step_major(prev_dones, np.float32),
            self._state[:batch],
            compute_values=False,
        )
        self._state[:batch] = state
        if self.actions == "mode":
            actions = mode_actions(distribution)
        else:
            actions = sample_actions(distribution, self.generator)
        log_probs = distribution.log_prob(actions.to(device))
        actions_np = actions[0].cpu().numpy()
        if self.policy.discrete_actions:
            actions_np = actions_np.astype(np.int64)
        return actions_np, log_probs[0].cpu().numpy().astype(np.float32)
