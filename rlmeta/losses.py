"""Masked means, advantage normalisation, importance log-ratios and PPO's clipped surrogate,
shared by MAML-RL and RL².

Tensors are time-major `[T, N]` with `mask` 1 on real steps and 0 on padding; every statistic
here is taken over the real steps only. Nothing here knows which algorithm calls it.

An all-padding mask has no mean. By default the result is then NaN, as `torch.mean` of an
empty tensor is, so a caller that checks for finite losses reports it; `zero_if_empty=True`
divides by at least 1 instead and gives 0.

A batch spread over several learners: `count` (the whole batch's real steps) makes a mean this
learner's share of it, and `total` (a sum over the learners) makes a statistic the whole batch's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# Added to the standard deviation before dividing by it, so constant advantages give 0, not NaN.
NORMALIZE_EPS = 1e-8


def masked_mean(
    values: Tensor, mask: Tensor, zero_if_empty: bool = False, count: Tensor | None = None
) -> Tensor:
    """`sum(values · mask) / sum(mask)`: the mean of `values` over the real steps (padded values
    are multiplied by 0, so they must be finite). `count` replaces `sum(mask)`."""
    count = mask.sum() if count is None else count
    if zero_if_empty:
        count = count.clamp_min(1.0)
    return (values * mask).sum() / count


def normalize_advantages(
    advantages: Tensor,
    mask: Tensor,
    zero_if_empty: bool = False,
    total: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Advantages shifted and scaled to mean 0 and standard deviation 1 over the real steps.

    The standard deviation is the population one (divided by the number of real steps, no
    Bessel correction) plus `NORMALIZE_EPS`; padded steps come out 0. With `total` the mean and
    standard deviation are those of every learner's steps together.
    """
    if total is not None:
        count = total(mask.sum())
        if zero_if_empty:
            count = count.clamp_min(1.0)
        mean = total((advantages * mask).sum()) / count
        variance = total(((advantages - mean) ** 2 * mask).sum()) / count
        return (advantages - mean) / (variance.sqrt() + NORMALIZE_EPS) * mask
    mean = masked_mean(advantages, mask, zero_if_empty)
    variance = masked_mean((advantages - mean) ** 2, mask, zero_if_empty)
    return (advantages - mean) / (variance.sqrt() + NORMALIZE_EPS) * mask


def masked_log_ratio(log_probs: Tensor, behaviour_log_probs: Tensor, mask: Tensor) -> Tensor:
    """`log π(a|s) − log π_behaviour(a|s)` on real steps, 0 on padding (whose stored log-prob is
    meaningless); its exponential is the importance ratio of off-policy corrections."""
    return torch.where(mask > 0, log_probs - behaviour_log_probs, torch.zeros_like(log_probs))


def clipped_surrogate(
    ratio: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip: float,
    zero_if_empty: bool = False,
    count: Tensor | None = None,
) -> Tensor:
    """PPO's clipped surrogate objective (to maximise), Schulman et al. 2017, "Proximal Policy
    Optimization Algorithms", eq. 7: `L^CLIP = E[min(r_t A_t, clip(r_t, 1−ε, 1+ε) A_t)]` with
    `r_t = π(a_t|s_t) / π_old(a_t|s_t)` (`ratio`) and `ε = clip`, the expectation a mean over
    the real steps.

    Where the clipped term is the smaller one (`r_t > 1+ε` with `A_t > 0`, or `r_t < 1−ε` with
    `A_t < 0`) it is constant in `r_t`, so that step contributes no gradient.
    """
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    return masked_mean(
        torch.min(ratio * advantages, clipped * advantages), mask, zero_if_empty, count)
