"""Losses of MAML-RL on one task's batch: the inner policy-gradient loss, the outer surrogates
and the mean KL. Each is a mean over the real (mask 1) steps of the batch.

Every ratio divides by the behaviour log-probabilities stored with the rollout, so episodes
sampled with slightly stale weights (async mode) are importance-corrected.
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from rlmeta import losses
from rlmeta.maml.batch import EpisodeBatch
from rlmeta.policies import Params

ESTIMATORS = ("maml", "dice")


def log_ratio(log_probs: Tensor, batch: EpisodeBatch) -> Tensor:
    """`log π(a|s) − log π_behaviour(a|s)` on this batch, 0 on padding."""
    return losses.masked_log_ratio(log_probs, batch.behaviour_log_probs, batch.mask)


def action_log_probs(policy, params: Params, batch: EpisodeBatch) -> Tensor:
    """`[T, N]` log π_params(a_t|s_t) for the batch's actions."""
    return policy.distribution(batch.observations, params).log_prob(batch.actions)


def inner_loss(
    log_probs: Tensor,
    batch: EpisodeBatch,
    estimator: str,
    fixed_weights: Tensor | None = None,
) -> Tensor:
    """Loss of one inner policy-gradient step (to minimise).

    - `maml`: the likelihood-ratio surrogate of Finn et al. 2017, Algorithm 3 / eq. 4 with the
      REINFORCE gradient (Williams 1992): `−mean(w · log π(a|s) · A)`, with the importance weight
      `w = π/π_behaviour` held constant (`fixed_weights`, or its current value detached). The
      samples are treated as fixed, so differentiating the step again drops the
      `∇log π ∇log πᵀ A` curvature term (the bias analysed by Rothfuss et al. 2019, ProMP §4).
    - `dice`: the low-variance curvature objective of ProMP (Rothfuss et al. 2019, eq. 16), the
      DiCE magic box (Foerster et al. 2018) applied per step with a baseline:
      `−mean(π/π_behaviour · A)`. Its first derivative is the same policy gradient; its second
      derivative also accounts for how the pre-update sampling distribution depends on θ.
    """
    ratio_log = log_ratio(log_probs, batch)
    if estimator == "maml":
        weights = ratio_log.detach().exp() if fixed_weights is None else fixed_weights
        return -losses.masked_mean(weights * log_probs * batch.advantages, batch.mask)
    if estimator == "dice":
        return -losses.masked_mean(ratio_log.exp() * batch.advantages, batch.mask)
    raise ValueError(
        f"meta-gradient estimator {estimator!r} is not supported; expected maml or dice"
    )


def surrogate(log_probs: Tensor, batch: EpisodeBatch) -> Tensor:
    """Importance-sampled policy objective (to maximise): `mean(π/π_behaviour · A)`, the TRPO
    surrogate of Schulman et al. 2015, eq. 14, evaluated on the post-adaptation episodes."""
    return losses.masked_mean(log_ratio(log_probs, batch).exp() * batch.advantages, batch.mask)


def clipped_surrogate(log_probs: Tensor, batch: EpisodeBatch, clip: float) -> Tensor:
    """PPO's clipped objective (to maximise), Schulman et al. 2017, eq. 7, with
    `r = π/π_behaviour`: `rlmeta.losses.clipped_surrogate` on this batch."""
    ratio = log_ratio(log_probs, batch).exp()
    return losses.clipped_surrogate(ratio, batch.advantages, batch.mask, clip)


def mean_kl(old: Distribution, new: Distribution, mask: Tensor) -> Tensor:
    """`mean KL(old ‖ new)` over real steps: the trust-region measure of TRPO (Schulman et al.
    2015, eq. 12, with the average rather than the maximum KL)."""
    return losses.masked_mean(kl_divergence(old, new), mask)
