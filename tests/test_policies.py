"""Policies: functional evaluation, space checks and reproducible sampling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmeta.config import PolicyConfig
from rlmeta.policies import (
    CategoricalMLPPolicy,
    FeedForwardActor,
    GaussianMLPPolicy,
    make_policy,
    mlp,
)

BOX2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
BOX3 = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def test_make_policy_picks_distribution_from_action_space():
    assert isinstance(make_policy(BOX3, BOX2, PolicyConfig(hidden_sizes=[8])), GaussianMLPPolicy)
    policy = make_policy(BOX3, gym.spaces.Discrete(4), PolicyConfig(hidden_sizes=[8]))
    assert isinstance(policy, CategoricalMLPPolicy)
    assert policy.distribution(torch.zeros(5, 3)).logits.shape == (5, 4)


def test_gaussian_policy_on_discrete_space_names_both():
    config = PolicyConfig(hidden_sizes=[8], distribution="gaussian")
    expected = r"Gaussian policy cannot act on action space Discrete\(4\)"
    with pytest.raises(ValueError, match=expected):
        make_policy(BOX3, gym.spaces.Discrete(4), config)


@pytest.mark.parametrize(
    ("obs_space", "act_space", "message"),
    [
        (BOX3, gym.spaces.Box(-1, 1, (2, 2)), "rank 2"),
        (BOX3, gym.spaces.MultiBinary(3), "not supported"),
        (gym.spaces.Box(-1, 1, (4, 4)), BOX2, "observation space"),
        (gym.spaces.Discrete(3), BOX2, "observation space"),
    ],
)
def test_unfit_spaces_are_clear_errors(obs_space, act_space, message):
    with pytest.raises(ValueError, match=message):
        make_policy(obs_space, act_space, PolicyConfig(hidden_sizes=[8]))


def test_unknown_activation_and_distribution_are_errors():
    # The config schema refuses them; mlp refuses an activation it is given directly.
    with pytest.raises(ValueError, match="'policy.activation' must be one of relu, tanh"):
        PolicyConfig(activation="gelu")
    with pytest.raises(ValueError, match="'policy.distribution' must be one of auto, gaussian"):
        PolicyConfig(distribution="beta")
    with pytest.raises(ValueError, match="activation 'gelu'"):
        mlp(3, [8], 2, "gelu")


def test_functional_params_replace_module_parameters_and_carry_gradients():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, [8], "tanh", init_log_std=-0.5)
    obs = torch.randn(4, 3)
    params = dict(policy.named_parameters())
    same = policy.distribution(obs, params)
    torch.testing.assert_close(same.mean, policy.distribution(obs).mean)
    torch.testing.assert_close(same.stddev, torch.full((4, 2), np.exp(-0.5), dtype=torch.float32))
    shifted = {k: v + 1.0 for k, v in params.items()}
    moved = policy.distribution(obs, shifted)
    assert not torch.allclose(moved.mean, same.mean)
    grad = torch.autograd.grad(moved.log_prob(torch.zeros(4, 2)).sum(), params["log_std"])[0]
    assert grad.abs().sum() > 0  # the graph reaches the dict's tensors through functional_call


def _actor_run(policy, seed):
    params = dict(policy.named_parameters())
    actor = FeedForwardActor(policy, params, torch.Generator().manual_seed(seed))
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    zeros = np.zeros(6, np.float32)
    return obs, actor.act(obs, zeros, zeros, zeros)


def test_actor_sampling_is_reproducible_and_log_probs_match():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, [8], init_log_std=1.0)  # wide, so some actions leave [-1, 1]
    obs, (actions, log_probs) = _actor_run(policy, seed=3)
    _, (again, _) = _actor_run(policy, seed=3)
    _, (other, _) = _actor_run(policy, seed=4)
    np.testing.assert_array_equal(actions, again)
    assert not np.allclose(actions, other)
    assert actions.dtype == np.float32 and log_probs.dtype == np.float32
    assert np.abs(actions).max() > 1.0  # unclipped: the envs clip
    with torch.no_grad():
        expected = policy.distribution(torch.as_tensor(obs)).log_prob(torch.as_tensor(actions))
    np.testing.assert_allclose(log_probs, expected.numpy(), rtol=1e-5)


def test_categorical_actor_returns_integer_actions():
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(3, 5, [8])
    _, (actions, log_probs) = _actor_run(policy, seed=0)
    assert actions.dtype == np.int64 and actions.shape == (6,)
    assert ((actions >= 0) & (actions < 5)).all()
    assert (log_probs < 0).all()


def test_sampled_log_probs_equal_the_distributions_log_prob():
    import gymnasium as gym
    import numpy as np
    import torch

    from rlmeta.config import PolicyConfig
    from rlmeta.policies import make_policy

    for action_space in (gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(4)):
        policy = make_policy(
            gym.spaces.Box(-1, 1, (2,), np.float32), action_space,
            PolicyConfig(hidden_sizes=[8], init_log_std=-0.7),
        )
        distribution = policy.distribution(torch.randn(5, 2))
        actions, log_probs = policy.sample_with_log_prob(
            distribution, torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(log_probs, distribution.log_prob(actions))
