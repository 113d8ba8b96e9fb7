"""The meta-gradient against central finite differences of the post-adaptation objective.

Float64, a tiny tanh policy and fixed episodes: the objective is then a deterministic function
of the meta-parameters (θ, and α when learned), and autodiff through the inner loop must match
its finite differences coordinate by coordinate.
"""

from __future__ import annotations

import pytest
import torch

from rlmeta.maml.batch import EpisodeBatch
from rlmeta.maml.inner import adapt, inner_step
from rlmeta.maml.meta import TaskBatches, meta_objective
from rlmeta.maml.objectives import action_log_probs, log_ratio, surrogate
from rlmeta.policies import GaussianMLPPolicy

T, N, OBS, ACT = 5, 3, 2, 2


def _batch(policy, params, generator) -> EpisodeBatch:
    """Episodes sampled from π_params with one padded tail; advantages are fixed constants."""
    obs = torch.randn(T, N, OBS, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs, params)
        actions = dist.mean + dist.stddev * torch.randn(
            T, N, ACT, generator=generator, dtype=torch.float64
        )
        behaviour = dist.log_prob(actions)
    mask = torch.ones(T, N, dtype=torch.float64)
    mask[3:, 1] = 0.0
    advantages = torch.randn(T, N, generator=generator, dtype=torch.float64) * mask
    return EpisodeBatch(obs, actions, mask, behaviour, advantages)


def _setup(inner_steps: int, learned: bool, seed: int = 0):
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(OBS, ACT, [4], "tanh", init_log_std=-0.3).double()
    generator = torch.Generator().manual_seed(seed)
    theta = {k: v.detach().clone() for k, v in policy.named_parameters()}
    tasks = []
    for _ in range(2):
        # Step k's episodes come from θ'_k, as on a worker; the behaviour log-probs are stored.
        params, inner = theta, []
        for _ in range(inner_steps):
            batch = _batch(policy, params, generator)
            inner.append(batch)
            params = {k: v.detach() for k, v in inner_step(policy, params, batch, 0.3, "dice",
                                                           first_order=True).items()}
        tasks.append(TaskBatches(inner=inner, post=_batch(policy, params, generator)))
    step = {k: torch.full_like(v, 0.3) + 0.05 * torch.rand(v.shape, generator=generator,
                                                           dtype=torch.float64)
            for k, v in theta.items()} if learned else 0.3
    return policy, theta, step, tasks


def _loss(policy, theta, step, tasks, estimator, fixed_weights):
    return meta_objective(policy, theta, step, tasks, estimator, first_order=False,
                          fixed_weights=fixed_weights).loss


def _maml_fixed_weights(policy, theta, step, tasks):
    """The paper's estimator holds the inner importance weights constant at the current point."""
    weights = []
    for task in tasks:
        adapted = adapt(policy, theta, task.inner, [step] * len(task.inner), "maml", True)
        per_step, params = [], theta
        for batch, nxt in zip(task.inner, adapted, strict=True):
            with torch.no_grad():
                per_step.append(log_ratio(action_log_probs(policy, params, batch), batch).exp())
            params = {k: v.detach() for k, v in nxt.items()}
        weights.append(per_step)
    return weights


@pytest.mark.parametrize("inner_steps", [1, 2])
@pytest.mark.parametrize("estimator", ["maml", "dice"])
@pytest.mark.parametrize("learned", [False, True])
def test_meta_gradient_matches_finite_differences(inner_steps, estimator, learned):
    policy, theta, step, tasks = _setup(inner_steps, learned)
    fixed = _maml_fixed_weights(policy, theta, step, tasks) if estimator == "maml" else None
    leaves_theta = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    leaves_step = ({k: v.clone().requires_grad_(True) for k, v in step.items()}
                   if learned else step)
    loss = _loss(policy, leaves_theta, leaves_step, tasks, estimator, fixed)
    leaves = list(leaves_theta.values()) + (list(leaves_step.values()) if learned else [])
    grads = torch.autograd.grad(loss, leaves)

    # The library's default (weights held at their current value) is the same estimator.
    default = _loss(policy, leaves_theta, leaves_step, tasks, estimator, None)
    for g, d in zip(grads, torch.autograd.grad(default, leaves), strict=True):
        torch.testing.assert_close(g, d, rtol=1e-10, atol=1e-12)

    eps = 1e-6
    values = [v.detach() for v in leaves]
    n_theta = len(theta)
    checked = 0
    for i, value in enumerate(values):
        for j in range(value.numel()):
            def at(delta, i=i, j=j):
                shifted = [v.clone() for v in values]
                shifted[i].view(-1)[j] += delta
                th = dict(zip(theta, shifted[:n_theta], strict=True))
                st = dict(zip(step, shifted[n_theta:], strict=True)) if learned else step
                with torch.enable_grad():
                    return float(_loss(policy, th, st, tasks, estimator, fixed).detach())
            numeric = (at(eps) - at(-eps)) / (2 * eps)
            analytic = float(grads[i].view(-1)[j])
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), (i, j)
            checked += 1
    assert checked == sum(v.numel() for v in values)
    assert max(float(g.abs().max()) for g in grads) > 1e-3  # a non-trivial gradient was checked


def test_estimators_share_the_adapted_values_but_not_the_meta_gradient():
    policy, theta, step, tasks = _setup(1, learned=False)
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    outputs = {e: meta_objective(policy, leaves, step, tasks, e, first_order=False)
               for e in ("maml", "dice")}
    for name in theta:
        maml_value, dice_value = (outputs[e].adapted[0][name] for e in ("maml", "dice"))
        torch.testing.assert_close(maml_value, dice_value)
    g_maml = torch.autograd.grad(outputs["maml"].loss, list(leaves.values()))
    g_dice = torch.autograd.grad(outputs["dice"].loss, list(leaves.values()))
    difference = sum(float((a - b).abs().sum()) for a, b in zip(g_maml, g_dice, strict=True))
    assert difference > 1e-4  # dice adds the ∇logπ∇logπᵀ curvature term


def test_first_order_meta_gradient_is_the_post_gradient_at_adapted_params():
    policy, theta, step, tasks = _setup(1, learned=False)
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    out = meta_objective(policy, leaves, step, tasks, "maml", first_order=True)
    fo = torch.autograd.grad(out.loss, list(leaves.values()))
    expected = [torch.zeros_like(v) for v in theta.values()]
    for task, adapted in zip(tasks, out.adapted, strict=True):
        at = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
        value = -surrogate(action_log_probs(policy, at, task.post), task.post) / len(tasks)
        for acc, g in zip(expected, torch.autograd.grad(value, list(at.values())), strict=True):
            acc += g
    for a, b in zip(fo, expected, strict=True):
        torch.testing.assert_close(a, b)
    second = torch.autograd.grad(
        meta_objective(policy, leaves, step, tasks, "maml", first_order=False).loss,
        list(leaves.values()),
    )
    assert sum(float((a - b).abs().sum()) for a, b in zip(fo, second, strict=True)) > 1e-4


def test_non_finite_inner_loss_raises_and_names_it():
    policy, theta, _, tasks = _setup(1, learned=False)
    batch = tasks[0].inner[0]
    batch.advantages[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="inner-loop loss on task 0 at inner step 0"):
        meta_objective(policy, theta, 0.3, tasks, "maml", first_order=False)


def test_stale_samples_are_importance_weighted_by_the_stored_behaviour_log_probs():
    # Async mode: episodes sampled with older weights θ_old are scored under the current θ.
    # Every objective divides by the log-probs stored at sampling, not by θ's own.
    policy, params, _, _ = _setup(inner_steps=1, learned=False)
    generator = torch.Generator().manual_seed(1)
    stale = {name: value + 0.1 for name, value in params.items()}
    batch = _batch(policy, stale, generator)
    log_probs = action_log_probs(policy, params, batch)
    real = batch.mask > 0
    weights = torch.exp(log_probs - batch.behaviour_log_probs)[real]
    assert not torch.allclose(weights, torch.ones_like(weights))  # the samples really are stale
    expected = (weights * batch.advantages[real]).mean()
    torch.testing.assert_close(surrogate(log_probs, batch), expected)
    padding = log_ratio(log_probs, batch)[~real]
    torch.testing.assert_close(padding, torch.zeros_like(padding))
    # Sampled with the current weights, the same objective has weight 1 everywhere.
    fresh = _batch(policy, params, generator)
    fresh_log_probs = action_log_probs(policy, params, fresh)
    torch.testing.assert_close(
        surrogate(fresh_log_probs, fresh),
        (fresh.advantages * fresh.mask).sum() / fresh.mask.sum(),
    )
