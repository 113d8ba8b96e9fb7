"""Discounted returns, generalised advantage estimation and the linear feature baseline.

Everything is time-major: `[T, N]` torch tensors, one column per sequence, `mask == 0` for
padding. Shared by MAML-RL and RL²; nothing here knows which algorithm calls it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_time_major(name: str, value: Tensor, shape: torch.Size) -> None:
    if value.shape != shape:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)}; expected time-major {tuple(shape)}"
        )


def discounted_returns(rewards: Tensor, dones: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go `R_t = r_t + gamma * R_{t+1}`, restarted after every `done` step.

    Padded steps (mask 0) get 0 and contribute nothing to the steps before them.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be time-major [T, N], got shape {tuple(rewards.shape)}")
    _check_time_major("dones", dones, rewards.shape)
    _check_time_major("mask", mask, rewards.shape)
    not_done = 1.0 - dones.to(rewards.dtype)
    mask = mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = (rewards[t] + gamma * not_done[t] * running) * mask[t]
        returns[t] = running
    return returns


def gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    mask: Tensor,
    gamma: float,
    lam: float,
    last_values: Tensor | None = None,
) -> Tensor:
    """Generalised advantage estimates (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16).

    `delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)` and `A_t = delta_t + gamma * lam * A_{t+1}`. A
    `done` step neither bootstraps from nor accumulates the step after it; neither does a step
    followed by padding. The last row bootstraps from `last_values` ([N], the value after the
    rollout was cut) when given and the step is not done; otherwise from 0. Padded steps give 0.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be time-major [T, N], got shape {tuple(rewards.shape)}")
    for name, value in (("values", values), ("dones", dones), ("mask", mask)):
        _check_time_major(name, value, rewards.shape)
    if last_values is not None and last_values.shape != rewards.shape[1:]:
        raise ValueError(
            f"last_values has shape {tuple(last_values.shape)}; expected [N] = "
            f"{tuple(rewards.shape[1:])}"
        )
    mask = mask.to(rewards.dtype)
    not_done = 1.0 - dones.to(rewards.dtype)
    # Continuation from step t to t+1: not done and t+1 a real step.
    follows = torch.cat([mask[1:], torch.ones_like(mask[:1])]) * not_done
    after_last = last_values if last_values is not None else torch.zeros_like(values[0])
    next_values = torch.cat([values[1:], after_last[None]])
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * follows[t] * next_values[t] - values[t]
        running = (delta + gamma * lam * follows[t] * running) * mask[t]
        advantages[t] = running
    return advantages


class LinearFeatureBaseline:
    """The MAML paper's value baseline (Finn et al. 2017, appendix A.2, after Duan et al. 2016,
    "Benchmarking Deep RL", rllab): regularised least squares on the features
    `[obs, obs², t, t², t³, 1]` with `t = timestep / 100` and observations clipped to ±10.

    Fitted per task on that task's episodes. The ridge term starts at `reg_coeff` and grows ×10
    (up to `max_tries` times) while the normal equations are numerically not positive definite.
    """

    def __init__(self, reg_coeff: float = 1e-5, max_tries: int = 5):
        if not reg_coeff > 0:
            raise ValueError(f"reg_coeff must be > 0, got {reg_coeff}")
        self.reg_coeff = reg_coeff
        self.max_tries = max_tries
        self.coefficients: Tensor | None = None
        self.reg_used: float | None = None

    @staticmethod
    def features(observations: Tensor, timesteps: Tensor) -> Tensor:
        """`[T, N, 2 * obs_dim + 4]` float64 features."""
        if observations.shape[:2] != timesteps.shape:
            raise ValueError(
                f"observations have leading shape {tuple(observations.shape[:2])} but timesteps "
                f"{tuple(timesteps.shape)}; expected the same [T, N]"
            )
        obs = observations.reshape(*observations.shape[:2], -1).to(torch.float64).clamp(-10, 10)
        t = (timesteps.to(torch.float64) / 100.0).unsqueeze(-1)
        return torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)

    def fit(self, observations: Tensor, returns: Tensor, mask: Tensor, timesteps: Tensor) -> None:
        """Least-squares fit of `returns` on the features of the real (mask 1) steps."""
        _check_time_major("returns", returns, timesteps.shape)
        _check_time_major("mask", mask, timesteps.shape)
        real = mask > 0
        feats = self.features(observations, timesteps)[real]
        targets = returns.to(torch.float64)[real]
        gram = feats.T @ feats
        rhs = feats.T @ targets
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        reg = self.reg_coeff
        for _ in range(self.max_tries):
            factor, info = torch.linalg.cholesky_ex(gram + reg * eye)
            if int(info) == 0:
                coefficients = torch.cholesky_solve(rhs[:, None], factor)[:, 0]
                if torch.isfinite(coefficients).all():
                    self.coefficients = coefficients
                    self.reg_used = reg
                    return
            reg *= 10.0
        raise FloatingPointError(
            f"linear baseline: normal equations stayed ill-conditioned up to regularisation "
            f"{reg / 10.0:g}; expected finite, bounded returns and observations"
        )

    def predict(self, observations: Tensor, mask: Tensor, timesteps: Tensor) -> Tensor:
        """Baseline values `[T, N]` (float64); 0 on padded steps."""
        if self.coefficients is None:
            raise RuntimeError("LinearFeatureBaseline.predict called before fit")
        _check_time_major("mask", mask, timesteps.shape)
        values = self.features(observations, timesteps) @ self.coefficients
        return values * mask.to(torch.float64)
