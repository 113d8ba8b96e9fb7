"""The PPO loss over whole RL² trials.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms": the clipped surrogate (eq. 7)
L^CLIP = E[min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t)], plus the value loss and entropy bonus of
eq. 9, L = -L^CLIP + c_1 · ½(V(s_t) - R_t)² - c_2 · H[π(·|s_t)]. Expectations are means over real
(unpadded) steps. ρ_t is taken against the behaviour log-probabilities recorded at sampling
time, so data from a slightly older weights version is still corrected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from rlmeta.losses import clipped_surrogate, masked_log_ratio, masked_mean


@dataclass
class PPOLoss:
    """The total loss to minimise and its parts (parts detached, for logging)."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_loss(
    distribution: Distribution,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    value_coef: float,
    entropy_coef: float,
    count: torch.Tensor | None = None,
) -> PPOLoss:
    """PPO-clip loss (Schulman et al. 2017, eqs. 7 and 9) on time-major `[T, N]` steps. With
    `count` (the minibatch's real steps over a learner group) every mean is this learner's
    share, and the parts sum over the group to the minibatch's loss."""
    policy = ppo_policy_terms(distribution, actions, old_log_probs, advantages, mask, clip, count)
    value_loss = ppo_value_loss(values, returns, mask, count)
    total = policy.policy + value_coef * value_loss - entropy_coef * policy.entropy
    return PPOLoss(
        total=total,
        policy=policy.policy.detach(),
        value=value_loss.detach(),
        entropy=policy.entropy.detach(),
        approx_kl=policy.approx_kl,
        clip_fraction=policy.clip_fraction,
    )


@dataclass
class PolicyTerms:
    """The policy's side of the loss: `policy` (-L^CLIP) and `entropy` differentiable, the
    diagnostics detached."""

    policy: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_policy_terms(
    distribution: Distribution,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    count: torch.Tensor | None = None,
) -> PolicyTerms:
    """-L^CLIP (eq. 7) and the entropy of eq. 9, with the KL and clip-fraction diagnostics:
    everything of the loss that depends on the action distribution only."""
    log_probs = distribution.log_prob(actions)
    log_ratio = masked_log_ratio(log_probs, old_log_probs, mask)
    ratio = log_ratio.exp()
    policy_loss = -clipped_surrogate(ratio, advantages, mask, clip, zero_if_empty=True,
                                     count=count)
    entropy = masked_mean(distribution.entropy(), mask, zero_if_empty=True, count=count)
    with torch.no_grad():
        # The low-variance estimator of KL(old || new) (Schulman, "Approximating KL divergence").
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask, zero_if_empty=True, count=count)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).float(), mask,
                                    zero_if_empty=True, count=count)
    return PolicyTerms(policy_loss, entropy, approx_kl, clip_fraction)


def ppo_value_loss(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
    count: torch.Tensor | None = None,
) -> torch.Tensor:
    """½(V(s_t) - R_t)² of eq. 9 over the real steps: the value function's side of the loss."""
    return 0.5 * masked_mean((values - returns) ** 2, mask, zero_if_empty=True, count=count)
