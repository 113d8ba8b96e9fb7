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
from rlmeta.maml.trpo import hessian_vector_product
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
) -> MetaOutput:
    """The meta-loss of `params` (and a learned `step_size`) on a meta-batch.

    The outer objective is the importance-sampled surrogate (TRPO, Schulman et al. 2015, eq.
    14) or, with `clip`, PPO's clipped surrogate (ProMP, Rothfuss et al. 2019, eq. 18 without
    the KL penalty). `old` are the reference post-adaptation policies for the KL; by default
    the current ones, detached (KL 0, but its Hessian is the Fisher matrix). `fixed_weights`
    pins the importance weights of the `maml` inner loss (see `objectives.inner_loss`).
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
    loss = -torch.stack(objectives).mean()
    check_finite("meta loss (post-adaptation surrogate)", loss)
    return MetaOutput(loss=loss, kl=torch.stack(kls).mean(), old=olds, adapted=adapted_all)


def adapted_fisher_product(
    policy, tasks: list[TaskBatches], adapted: list[Params], damping: float, step_stride: int = 1
) -> Callable[[Tensor], Tensor]:
    """`v ↦ (mean_tasks F(θ'_task) + damping·I) v`: the Fisher matrix of each adapted policy at
    its own parameters, averaged over the meta-batch.

    The exact TRPO metric of MAML is the Hessian of the mean KL of the adapted policies with
    respect to θ, `mean_tasks Jᵀ F(θ'_task) J` with `J = ∂θ'/∂θ`; each of its products is a double
    backward through every task's differentiable inner loop. This preconditioner leaves `J` out
    (J = I + O(α)), so a product costs one double backward through the policy on the
    post-adaptation episodes. Only the metric is approximated: the meta-gradient stays exact and
    the line search still enforces the true KL. `adapted` must hold one parameter dict per task
    in the order of the meta-parameters. With `step_stride` k the Fisher is taken on every k-th
    time step of the post-adaptation episodes (TRPO, Schulman et al. 2015, §6: 10% of the data).
    """
    leaves = [{name: p.detach().requires_grad_(True) for name, p in params.items()}
              for params in adapted]
    kls = []
    for task, task_params in zip(tasks, leaves, strict=True):
        observations = task.post.observations[::step_stride]
        kls.append(mean_kl(
            detached_distribution(policy, task_params, observations),
            policy.distribution(observations, task_params),
            task.post.mask[::step_stride],
        ))
    # KL of task i depends on θ'_i alone, so the Hessian over all tasks' leaves is block-diagonal
    # with blocks F(θ'_i) / n: a product with v repeated per task, summed over tasks, is the mean.
    blocks = hessian_vector_product(
        torch.stack(kls).mean(), [p for params in leaves for p in params.values()]
    )
    count = len(leaves)

    def product(vector: Tensor) -> Tensor:
        return blocks(vector.repeat(count)).view(count, -1).sum(0) + damping * vector

    return product
