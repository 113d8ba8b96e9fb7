"""The MAML meta-objective over a meta-batch: adapt on each task's inner episodes, then score
the adapted policy on that task's post-adaptation episodes (Finn et al. 2017, eq. 1 with the
RL loss of §3.2): `J(θ) = mean_tasks J_post(θ'_task(θ))`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from rlmeta.maml.batch import EpisodeBatch
from rlmeta.maml.inner import StepSize, adapt, check_finite
from rlmeta.maml.objectives import clipped_surrogate, mean_kl, surrogate
from rlmeta.maml.trpo import flat, hessian_vector_product
from rlmeta.policies import Params


@dataclass
class TaskBatches:
    """One task's episodes: one batch per inner step, then the post-adaptation batch."""

    inner: list[EpisodeBatch]
    post: EpisodeBatch


@dataclass
class MetaOutput:
    loss: Tensor  # −mean objective over tasks (to minimise)
    kl: Tensor  # mean over tasks of KL(old adapted policy ‖ current adapted policy)
    old: list[Distribution]  # the reference post-adaptation policies (detached)
    adapted: list[Params]  # θ' per task


def task_mean(values: list[Tensor], task_count: int | None) -> Tensor:
    """The mean of per-task scalars over the meta-batch; with `task_count` (the meta-batch's size
    when these tasks are one learner's shard of it) this shard's share of that mean, which a
    learner group sums."""
    stacked = torch.stack(values)
    return stacked.mean() if task_count is None else stacked.sum() / task_count


def detached_distribution(policy, params: Params, observations: Tensor) -> Distribution:
    """π_params(·|obs) with no graph back to `params`."""
    return policy.distribution(observations, {k: v.detach() for k, v in params.items()})


def meta_objective(
    policy,
    params: Params,
    step_size: StepSize,
    tasks: list[TaskBatches],
    estimator: str,
    first_order: bool,
    old: list[Distribution] | None = None,
    clip: float | None = None,
    fixed_weights: list[list[Tensor]] | None = None,
    task_count: int | None = None,
) -> MetaOutput:
    """The meta-loss of `params` (and a learned `step_size`) on a meta-batch.

    The outer objective is the importance-sampled surrogate (TRPO, Schulman et al. 2015, eq.
    14) or, with `clip`, PPO's clipped surrogate (ProMP, Rothfuss et al. 2019, eq. 18 without
    the KL penalty). `old` are the reference post-adaptation policies for the KL; by default
    the current ones, detached (KL 0, but its Hessian is the Fisher matrix). `fixed_weights`
    pins the importance weights of the `maml` inner loss (see `objectives.inner_loss`). With
    `task_count` the loss and KL are this shard's shares of the meta-batch means (`task_mean`).
    """
    if not tasks:
        raise ValueError("meta-batch is empty; expected at least one task")
    objectives, kls, olds, adapted_all = [], [], [], []
    for i, task in enumerate(tasks):
        # No inner batches (inner_steps 0): the objective is that of θ itself, multi-task TRPO/PPO.
        adapted = adapt(
            policy, params, task.inner, [step_size] * len(task.inner), estimator, first_order,
            None if fixed_weights is None else fixed_weights[i], where=f" on task {i}",
        )[-1] if task.inner else params
        distribution = policy.distribution(task.post.observations, adapted)
        log_probs = distribution.log_prob(task.post.actions)
        if clip is None:
            objectives.append(surrogate(log_probs, task.post))
        else:
            objectives.append(clipped_surrogate(log_probs, task.post, clip))
        reference = (
            old[i] if old is not None
            else detached_distribution(policy, adapted, task.post.observations)
        )
        kls.append(mean_kl(reference, distribution, task.post.mask))
        olds.append(reference)
        adapted_all.append(adapted)
    loss = -task_mean(objectives, task_count)
    check_finite("meta loss (post-adaptation surrogate)", loss)
    return MetaOutput(loss=loss, kl=task_mean(kls, task_count), old=olds, adapted=adapted_all)


def adapted_fisher_product(
    policy,
    params: Params,
    step_size: StepSize,
    tasks: list[TaskBatches],
    adapted: list[Params],
    damping: float,
    step_stride: int = 1,
    task_count: int | None = None,
) -> Callable[[Tensor], Tensor]:
    """`v ↦ (mean_tasks J̃ᵀ F(θ'_task) J̃ + damping·I) v`: the Fisher matrix of each adapted
    policy at its own parameters, averaged over the meta-batch.

    The exact TRPO metric of MAML is the Hessian of the mean KL of the adapted policies with
    respect to the meta-parameters, `mean_tasks Jᵀ F(θ'_task) J` with `J = ∂θ'/∂θ`; each of its
    products is a double backward through every task's differentiable inner loop. This
    preconditioner takes `J̃ = I` (J = I + O(α)), so a product costs one double backward through
    the policy on the post-adaptation episodes. With a learned per-parameter step size α
    (Meta-SGD) the meta-parameters are (θ, α) and `θ' = θ − α ⊙ Σ_k g_k`, so `J̃ = [I, −diag(d)]`
    with `d = Σ_k g_k = (θ − θ')/α` read off the adapted parameters (the inner gradients' own
    dependence on θ and α left out alike). Only the metric is approximated: the meta-gradient
    stays exact and the line search still enforces the true KL. `adapted` holds one parameter
    dict per task, keyed and ordered as `params`. With `step_stride` k the Fisher is taken on
    every k-th time step of the post-adaptation episodes (TRPO, Schulman et al. 2015, §6: 10%).
    With `task_count` the product is this shard's share of the meta-batch's (`task_mean`).
    """
    leaves = [{name: p.detach().requires_grad_(True) for name, p in task_params.items()}
              for task_params in adapted]
    kls = []
    for task, task_params in zip(tasks, leaves, strict=True):
        observations = task.post.observations[::step_stride]
        kls.append(mean_kl(
            detached_distribution(policy, task_params, observations),
            policy.distribution(observations, task_params),
            task.post.mask[::step_stride],
        ))
    # KL of task i depends on θ'_i alone, so the Hessian over all tasks' leaves is block-diagonal
    # with blocks F(θ'_i) / n: products with each task's J̃v, summed over tasks, give the mean.
    blocks = hessian_vector_product(
        task_mean(kls, task_count), [p for task_params in leaves for p in task_params.values()]
    )
    count, size = len(leaves), sum(p.numel() for p in params.values())
    moves = None
    if isinstance(step_size, dict):
        theta = flat([p.detach() for p in params.values()])
        alpha = flat([step_size[name].detach() for name in params])
        moves = torch.stack([(theta - flat([p.detach() for p in task_params.values()])) / alpha
                             for task_params in adapted])

    def product(vector: Tensor) -> Tensor:
        on_theta = vector[:size]
        if moves is None:
            per_task = blocks(on_theta.repeat(count)).view(count, size)
            return per_task.sum(0) + damping * vector
        per_task = blocks((on_theta - moves * vector[size:]).reshape(-1)).view(count, size)
        return torch.cat([per_task.sum(0), -(moves * per_task).sum(0)]) + damping * vector

    return product
