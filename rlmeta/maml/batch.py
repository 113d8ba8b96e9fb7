"""A sampled rollout as tensors with advantages, ready for the inner loss or the outer surrogate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rlmeta.losses import normalize_advantages
from rlmeta.returns import LinearFeatureBaseline, discounted_returns, gae
from rlmeta.rollout import Rollout


@dataclass
class EpisodeBatch:
    """Time-major tensors of one rollout on one task; advantages are constants (no graph)."""

    observations: Tensor  # [T, N, obs_dim]
    actions: Tensor  # [T, N, act_dim] or [T, N]
    mask: Tensor  # [T, N]
    behaviour_log_probs: Tensor  # [T, N] log-probs stored by the sampler
    advantages: Tensor  # [T, N]

    @property
    def num_steps(self) -> Tensor:
        return self.mask.sum()


def advantages(
    rollout: Rollout, gamma: float, gae_lambda: float, normalize: bool
) -> Tensor:
    """Per-step advantages `[T, N]` (float64) against a linear baseline fitted on this rollout."""
    # torch.tensor copies: arrays that arrive through Ray's object store are read-only.
    rewards = torch.tensor(rollout.rewards, dtype=torch.float64)
    dones = torch.tensor(rollout.dones)
    mask = torch.tensor(rollout.mask, dtype=torch.float64)
    observations = torch.tensor(rollout.observations)
    timesteps = torch.tensor(rollout.timesteps)
    returns = discounted_returns(rewards, dones, mask, gamma)
    baseline = LinearFeatureBaseline()
    baseline.fit(observations, returns, mask, timesteps)
    values = baseline.predict(observations, mask, timesteps)
    result = gae(rewards, values, dones, mask, gamma, gae_lambda)
    if normalize:
        result = normalize_advantages(result, mask)
    return result


def to_batch(
    rollout: Rollout,
    gamma: float,
    gae_lambda: float,
    normalize: bool,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> EpisodeBatch:
    """Tensors of `rollout` on `device` with advantages computed once here."""
    for name in ("observations", "rewards"):
        if not np.all(np.isfinite(getattr(rollout, name))):
            raise FloatingPointError(
                f"non-finite {name} in the rollout of task {rollout.task!r}; expected finite values"
            )
    discrete = rollout.actions.dtype.kind in "iu"
    return EpisodeBatch(
        observations=torch.tensor(rollout.observations, dtype=dtype, device=device),
        actions=torch.tensor(
            rollout.actions, dtype=torch.int64 if discrete else dtype, device=device
        ),
        mask=torch.tensor(rollout.mask, dtype=dtype, device=device),
        behaviour_log_probs=torch.tensor(rollout.log_probs, dtype=dtype, device=device),
        advantages=advantages(rollout, gamma, gae_lambda, normalize).to(dtype=dtype, device=device),
    )
