"""TRPO pieces: Hessian-vector products, conjugate gradient, line search, and the KL bound of
accepted steps of the MAML outer loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.maml import MAMLAlgorithm
from rlmeta.maml.inner import adapt
from rlmeta.maml.local import sample_meta_batch
from rlmeta.maml.objectives import mean_kl
from rlmeta.maml.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    flat,
    hessian_vector_product,
    unflat,
)
from rlmeta.policies import GaussianMLPPolicy
from rlmeta.tasks import make_task_env, sample_tasks


def test_hessian_vector_product_matches_explicit_kl_hessian():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, [3], "tanh", init_log_std=-0.2).double()
    obs = torch.randn(7, 2, dtype=torch.float64)
    mask = torch.ones(7, dtype=torch.float64)
    names = [n for n, _ in policy.named_parameters()]
    start = [p.detach().clone() for p in policy.parameters()]
    old = policy.distribution(obs)
    old = type(old)(type(old.base_dist)(old.mean.detach(), old.stddev.detach()), 1)
    # Evaluate away from the minimum so the KL Hessian is not only the Fisher matrix.
    point = flat(start) + 0.1 * torch.randn(sum(p.numel() for p in start), dtype=torch.float64)

    def kl_of(vector):
        params = dict(zip(names, unflat(vector, start), strict=True))
        return mean_kl(old, policy.distribution(obs, params), mask)

    hessian = torch.autograd.functional.hessian(kl_of, point)
    leaves = [t.clone().requires_grad_(True) for t in unflat(point, start)]
    value = mean_kl(old, policy.distribution(obs, dict(zip(names, leaves, strict=True))), mask)
    product = hessian_vector_product(value, leaves, damping=0.01)
    for seed in range(3):
        v = torch.randn(point.numel(), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        torch.testing.assert_close(product(v), hessian @ v + 0.01 * v)
    assert hessian.abs().max() > 1e-3


def test_conjugate_gradient_solves_spd_system():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    x, curvature = conjugate_gradient(lambda v: a @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(curvature, x @ a @ x)
    partial, partial_curvature = conjugate_gradient(lambda v: a @ v, b, iters=2)
    assert (a @ partial - b).norm() > 1e-6  # fewer iterations than dimensions: not yet exact
    # xᵀAx from CG's residual holds for a partial solve too, the case TRPO's 10 iterations are.
    torch.testing.assert_close(partial_curvature, partial @ a @ partial)
    assert partial_curvature < curvature


def test_conjugate_gradient_curvature_in_float32_matches_an_explicit_product():
    generator = torch.Generator().manual_seed(1)
    m = torch.randn(200, 200, generator=generator)
    a = m @ m.T / 200 + 1e-2 * torch.eye(200)  # badly conditioned, as Fisher matrices are
    b = torch.randn(200, generator=generator)
    x, curvature = conjugate_gradient(lambda v: a @ v, b, iters=10)
    torch.testing.assert_close(curvature, x @ a @ x, rtol=1e-4, atol=0)


def test_line_search_accepts_first_fraction_inside_region_that_improves():
    tried = []

    def evaluate(fraction):
        tried.append(fraction)
        # Too far at 1 and 0.5 (KL), NaN at 0.25, improves at 0.125.
        return {1.0: (0.0, 0.5), 0.5: (0.0, 0.02), 0.25: (math.nan, 0.001)}.get(
            fraction, (0.5, 0.001)
        )

    result = backtracking_line_search(evaluate, old_loss=1.0, max_kl=0.01, max_steps=10,
                                      backtrack_ratio=0.5)
    assert result.accepted and result.fraction == 0.125 and result.tries == 4
    assert tried == [1.0, 0.5, 0.25, 0.125]
    rejected = backtracking_line_search(lambda f: (2.0, 0.0), 1.0, 0.01, 3, 0.5)
    assert not rejected.accepted and rejected.fraction == 0.0 and rejected.tries == 3


def _navigation(horizon=20, n_envs=4):
    return [make_task_env("rlmeta/Navigation2D-v0", horizon=horizon) for _ in range(n_envs)]


def _algorithm(**maml):
    config = ExperimentConfig()
    config.policy.hidden_sizes = [16]
    config.maml.episodes_per_task = 4
    for key, value in maml.items():
        setattr(config.maml, key, value)
    envs = _navigation()
    return MAMLAlgorithm(config, envs[0].observation_space, envs[0].action_space), envs


def _specs(envs, n, seed):
    tasks = sample_tasks(envs[0], n, np.random.default_rng(seed))
    return [TaskSpec(i, task, 100 * seed + i) for i, task in enumerate(tasks)]


def _measured_kl(algorithm, before, after, results):
    """Mean over tasks of the mean KL between the adapted policies before and after the step."""
    policy, cfg = algorithm.policy, algorithm.maml
    kls = []
    for result in algorithm._task_batches(results):
        adapted = []
        for weights in (before, after):
            theta = {k[len("policy/"):]: v.clone().requires_grad_(True)
                     for k, v in weights.items() if k.startswith("policy/")}
            step = ({k[len("inner_lr/"):]: v for k, v in weights.items()
                     if k.startswith("inner_lr/")} or cfg.inner_lr)
            params = adapt(policy, theta, result.inner, [step] * len(result.inner),
                           cfg.estimator, True)[-1]
            adapted.append(policy.distribution(result.post.observations, params))
        kls.append(float(mean_kl(adapted[0], adapted[1], result.post.mask).detach()))
    return float(np.mean(kls))


@pytest.mark.parametrize("fisher", ["adapted", "exact"])
@pytest.mark.parametrize(("max_kl", "learn_inner_lr"), [(0.01, False), (1e-4, True)])
def test_every_accepted_trpo_step_respects_max_kl(max_kl, learn_inner_lr, fisher):
    algorithm, envs = _algorithm(max_kl=max_kl, learn_inner_lr=learn_inner_lr, fisher=fisher)
    accepted = 0
    for iteration in range(3):
        results = sample_meta_batch(algorithm, envs, _specs(envs, 3, iteration), iteration)
        before = algorithm.get_weights()
        metrics = algorithm.update(results)
        after = algorithm.get_weights()
        if metrics["trpo/accepted"]:
            accepted += 1
            measured = _measured_kl(algorithm, before, after, results)
            assert 0 < measured <= max_kl
            assert measured == pytest.approx(metrics["kl"], rel=1e-3, abs=1e-7)
            assert metrics["trpo/improvement"] > 0
            assert any(not torch.equal(before[k], after[k]) for k in before)
    assert accepted >= 2
    if learn_inner_lr:
        assert any(k.startswith("inner_lr/") for k in after)


def test_trpo_step_without_improvement_is_rejected_and_keeps_weights():
    algorithm, envs = _algorithm()
    results = sample_meta_batch(algorithm, envs, _specs(envs, 2, 0))
    for result in results:
        for rollout in result.rollouts:
            rollout.rewards[:] = 0.0  # zero advantage everywhere: no step can improve
    before = algorithm.get_weights()
    metrics = algorithm.update(results)
    assert metrics["trpo/rejected"] == 1.0 and metrics["trpo/accepted"] == 0.0
    assert metrics["trpo/rejections_total"] == 1.0 and algorithm.trpo_rejections == 1
    for key, value in algorithm.get_weights().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
