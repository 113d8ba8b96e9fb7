"""Feed-forward stochastic policies that can be evaluated with an explicit parameter dict.

`distribution(obs, params)` runs the module through `torch.func.functional_call` when `params`
is given, so an inner loop adapts a dict of tensors out of place and never clones a module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlmeta.config import PolicyConfig

Params = dict[str, Tensor]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int, activation: str) -> nn.Sequential:
    """Linear layers with `activation` between them and none after the last."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not supported; expected one of relu, tanh")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    return nn.Sequential(*layers)


class _FunctionalPolicy(nn.Module):
    """Shared plumbing: functional evaluation and generator-driven sampling."""

    def distribution(self, obs: Tensor, params: Params | None = None) -> Distribution:
        """π(·|obs) under the module's own parameters, or under `params` when given."""
        if params is None:
            return self._distribution(self(obs))
        outputs = torch.func.functional_call(self, params, (obs,))
        return self._distribution(outputs)

    def _distribution(self, outputs: tuple[Tensor, ...] | Tensor) -> Distribution:
        raise NotImplementedError

    def sample(self, distribution: Distribution, generator: torch.Generator) -> Tensor:
        """Draw one action per row with `generator`, so sampling is reproducible from a seed."""
        raise NotImplementedError

    def sample_with_log_prob(
        self, distribution: Distribution, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """`sample` and the log-probability of each drawn action."""
        raise NotImplementedError


class GaussianMLPPolicy(_FunctionalPolicy):
    """Diagonal Gaussian with an MLP mean and a state-independent log standard deviation."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: list[int],
        activation: str = "relu",
        init_log_std: float = 0.0,
    ):
        super().__init__()
        self.mean = mlp(obs_dim, hidden_sizes, act_dim, activation)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        return mean, self.log_std.expand_as(mean)

    def _distribution(self, outputs: tuple[Tensor, ...] | Tensor) -> Distribution:
        mean, log_std = outputs
        # Argument validation costs more than the forward itself on small sampling batches.
        return Independent(Normal(mean, log_std.exp(), validate_args=False), 1, validate_args=False)

    def sample(self, distribution: Distribution, generator: torch.Generator) -> Tensor:
        return self.sample_with_log_prob(distribution, generator)[0]

    def sample_with_log_prob(
        self, distribution: Distribution, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """An action per row and its log-probability, the latter from the standard-normal noise
        (`−½‖ε‖² − Σ log σ − (d/2) log 2π`): cheaper than `log_prob` on the sampling hot path."""
        base = distribution.base_dist
        noise = torch.randn(
            base.loc.shape, generator=generator, dtype=base.loc.dtype, device=base.loc.device
        )
        log_prob = -0.5 * (noise * noise).sum(-1) - base.scale.log().sum(-1) - _HALF_LOG_2PI * (
            noise.shape[-1]
        )
        return base.loc + base.scale * noise, log_prob


class CategoricalMLPPolicy(_FunctionalPolicy):
    """Categorical distribution over `num_actions` with MLP logits."""

    def __init__(
        self, obs_dim: int, num_actions: int, hidden_sizes: list[int], activation: str = "relu"
    ):
        super().__init__()
        self.logits = mlp(obs_dim, hidden_sizes, num_actions, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return self.logits(obs)

    def _distribution(self, outputs: tuple[Tensor, ...] | Tensor) -> Distribution:
        return Categorical(logits=outputs, validate_args=False)

    def sample(self, distribution: Distribution, generator: torch.Generator) -> Tensor:
        return torch.multinomial(distribution.probs, 1, generator=generator).squeeze(-1)

    def sample_with_log_prob(
        self, distribution: Distribution, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        actions = self.sample(distribution, generator)
        return actions, distribution.log_prob(actions)


def make_policy(
    observation_space: gym.Space, action_space: gym.Space, policy_config: PolicyConfig
) -> _FunctionalPolicy:
    """The policy that fits the spaces: Gaussian for a flat Box, categorical for Discrete."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"observation space {observation_space} is not supported by the MLP policies; "
            f"expected a flat Box of shape (obs_dim,)"
        )
    obs_dim = int(observation_space.shape[0])
    kind = policy_config.distribution
    if kind == "auto":
        if isinstance(action_space, gym.spaces.Discrete):
            kind = "categorical"
        elif isinstance(action_space, gym.spaces.Box):
            kind = "gaussian"
        else:
            raise ValueError(
                f"action space {action_space} is not supported; expected a flat Box (Gaussian "
                f"policy) or Discrete (categorical policy)"
            )
    if kind == "gaussian":
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(
                f"a Gaussian policy cannot act on action space {action_space}; expected a flat "
                f"Box (use distribution: categorical or auto for Discrete spaces)"
            )
        if len(action_space.shape) != 1:
            raise ValueError(
                f"action space {action_space} has rank {len(action_space.shape)}; the Gaussian "
                f"policy expects a flat Box of shape (act_dim,)"
            )
        return GaussianMLPPolicy(
            obs_dim,
            int(action_space.shape[0]),
            list(policy_config.hidden_sizes),
            policy_config.activation,
            policy_config.init_log_std,
        )
    if kind == "categorical":
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"a categorical policy cannot act on action space {action_space}; expected Discrete"
            )
        return CategoricalMLPPolicy(
            obs_dim, int(action_space.n), list(policy_config.hidden_sizes), policy_config.activation
        )
    raise ValueError(
        f"policy distribution {kind!r} is not supported; expected auto, gaussian or categorical"
    )


class FeedForwardActor:
    """`rlmeta.rollout.Actor` for a feed-forward policy under a fixed parameter dict.

    One no-grad batched forward per step on CPU. Actions are returned unclipped (the envs clip),
    so the stored log-probabilities are those of the actions actually sampled.
    """

    def __init__(self, policy: _FunctionalPolicy, params: Params, generator: torch.Generator):
        # A private copy holding `params`: functional_call on every step costs as much as the
        # forward pass itself, and these parameters do not change while the actor samples.
        self.policy = copy.deepcopy(policy).cpu()
        self.policy.load_state_dict(
            {name: value.detach().cpu() for name, value in params.items()}, strict=True
        )
        self.policy.requires_grad_(False)
        self.generator = generator
        self.dtype = next(iter(self.policy.parameters())).dtype
        discrete = isinstance(policy, CategoricalMLPPolicy)
        self.action_dtype = np.dtype(np.int64 if discrete else np.float32)

    def start_sequences(self, slots: np.ndarray) -> None:
        """Feed-forward: nothing carries over between steps."""

    def act(
        self,
        observations: np.ndarray,
        prev_actions: np.ndarray,
        prev_rewards: Sequence[float],
        prev_dones: Sequence[float],
    ) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            obs = torch.as_tensor(observations, dtype=self.dtype)
            distribution = self.policy.distribution(obs)
            actions, log_probs = self.policy.sample_with_log_prob(distribution, self.generator)
        actions_np, log_probs_np = actions.numpy(), log_probs.numpy()
        # A no-op astype is still a numpy call, which costs microseconds on the sampling path.
        if actions_np.dtype != self.action_dtype:
            actions_np = actions_np.astype(self.action_dtype)
        if log_probs_np.dtype != np.float32:
            log_probs_np = log_probs_np.astype(np.float32)
        return actions_np, log_probs_np
