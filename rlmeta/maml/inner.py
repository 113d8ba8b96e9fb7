"""The differentiable MAML inner loop: policy-gradient steps out of place on a parameter dict.

`θ' = θ − α ⊙ ∇_θ L_in(θ)` (Finn et al. 2017, eq. 1; with a learned per-parameter α this is
Meta-SGD, Li et al. 2017, eq. 3). Second-order by default: the gradient is taken with
`create_graph=True`, so the meta-gradient flows through it. `first_order` treats `∇L_in` as a
constant (FO-MAML); θ' still depends on θ and on a learned α.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlmeta.maml.batch import EpisodeBatch
from rlmeta.maml.objectives import action_log_probs, inner_loss
from rlmeta.policies import Params

StepSize = float | dict[str, Tensor]


def check_finite(name: str, *tensors: Tensor) -> None:
    """Raise `FloatingPointError` naming `name` if any tensor holds NaN or ±inf."""
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise FloatingPointError(
            f"non-finite {name}; expected finite values (weights left as they were)"
        )


def inner_step(
    policy,
    params: Params,
    batch: EpisodeBatch,
    step_size: StepSize,
    estimator: str,
    first_order: bool,
    fixed_weights: Tensor | None = None,
    where: str = "",
) -> Params:
    """One policy-gradient step on `batch` from `params`; returns the new parameter dict."""
    if not all(p.requires_grad for p in params.values()):
        # Worker side: plain values, so make leaves to differentiate against.
        params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    loss = inner_loss(action_log_probs(policy, params, batch), batch, estimator, fixed_weights)
    check_finite(f"inner-loop loss{where}", loss)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
    check_finite(f"inner-loop gradient{where}", *grads)
    return {
        name: p - (step_size[name] if isinstance(step_size, dict) else step_size) * g
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def adapt(
    policy,
    params: Params,
    batches: list[EpisodeBatch],
    step_sizes: list[StepSize],
    estimator: str,
    first_order: bool,
    fixed_weights: list[Tensor] | None = None,
    where: str = "",
) -> list[Params]:
    """`len(batches)` inner steps, step k on `batches[k]` (sampled with the step-k parameters).

    Returns the parameters after each step, `[θ'_1, ..., θ'_K]`.
    """
    if len(step_sizes) != len(batches):
        raise ValueError(f"got {len(step_sizes)} step sizes for {len(batches)} inner steps")
    adapted: list[Params] = []
    for k, batch in enumerate(batches):
        weights = None if fixed_weights is None else fixed_weights[k]
        params = inner_step(
            policy, params, batch, step_sizes[k], estimator, first_order, weights,
            where=f"{where} at inner step {k}",
        )
        adapted.append(params)
    return adapted
