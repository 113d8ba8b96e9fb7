"""The RL² network: a GRU over (observation, previous action, previous reward, previous done).

Duan et al. 2016, §2.2: the policy's input at step t of a trial is (s_t, a_{t-1}, r_{t-1}, d_{t-1})
and its hidden state is *not* reset between the episodes of a trial, so what it has learned about
the task so far lives in the state. Inputs are time-major `[T, B, ...]`; one call runs a whole
trial (training) or a single step (sampling, `T = 1`).

The value function reads the same GRU (`separate_value=False`) or a GRU of its own over the same
inputs (`True`), so the value loss does not shape the policy's features; the recurrent state is
then the two GRUs' states side by side, `[B, 2 * hidden_size]`.

With `trial_episodes` set, the policy also reads how far through its trial it is: the episodes
completed so far over `trial_episodes`. What is worth exploring depends on how many episodes are
left (a finite-horizon Gittins index does), and a GRU learns to count to 100 pulls only slowly.
The count lives in one extra column at the end of the recurrent state, advanced by the done flags
the policy reads anyway, so sampling step by step and recomputing whole trials agree exactly.
This input is rlmeta's option, not the paper's (Duan et al. feed only s, a, r, d).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlmeta.rl2.layer_norm_gru import LayerNormGRU

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
# The recurrent cell: torch's GRU (the paper's), or one with layer-normalised gates.
RECURRENT_CELLS: dict[str, type[nn.Module]] = {"gru": nn.GRU, "layer_norm_gru": LayerNormGRU}


def _check_space(name: str, space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Discrete):
        return
    if isinstance(space, gym.spaces.Box):
        if name == "action_space" and len(space.shape) != 1:
            raise ValueError(
                f"RL² action_space must be a 1-D Box or Discrete, got shape {space.shape}"
            )
        return
    raise ValueError(f"RL² {name} must be gymnasium Box or Discrete, got {type(space).__name__}")


def _space_width(space: gym.Space) -> int:
    """Width of a space's encoding: one-hot size for Discrete, flattened size for Box."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))


class RecurrentPolicy(nn.Module):
    """GRU policy and value function for RL² with a categorical or Gaussian action head."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: list[int],
        hidden_size: int,
        activation: str = "tanh",
        init_log_std: float = 0.0,
        separate_value: bool = False,
        trial_episodes: int | None = None,
        cell: str = "gru",
    ) -> None:
        super().__init__()
        _check_space("observation_space", observation_space)
        _check_space("action_space", action_space)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"policy activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if cell not in RECURRENT_CELLS:
            raise ValueError(
                f"RL² recurrent cell must be one of {', '.join(RECURRENT_CELLS)}, got {cell!r}"
            )
        if hidden_size < 1 or any(width < 1 for width in hidden_sizes):
            raise ValueError(
                f"RL² layer widths must be >= 1, got hidden_sizes={hidden_sizes}, "
                f"hidden_size={hidden_size}"
            )
        self.discrete_observations = isinstance(observation_space, gym.spaces.Discrete)
        self.discrete_actions = isinstance(action_space, gym.spaces.Discrete)
        self.observation_width = _space_width(observation_space)
        self.action_width = _space_width(action_space)
        if trial_episodes is not None and trial_episodes < 1:
            raise ValueError(f"RL² trial_episodes must be >= 1 or None, got {trial_episodes}")
        self.gru_size = hidden_size
        self.separate_value = separate_value
        self.trial_episodes = trial_episodes
        # Width of the recurrent state carried between calls: both GRUs' when separate, plus
        # the trial's episode count when the policy reads its progress.
        self.hidden_size = hidden_size * (2 if separate_value else 1) + (
            1 if trial_episodes is not None else 0
        )

        # Observation, previous action, previous reward, previous done (, trial progress).
        input_width = self.observation_width + self.action_width + 2
        input_width += 1 if trial_episodes is not None else 0

        def recurrent_core() -> tuple[nn.Sequential, nn.Module]:
            width, layers = input_width, []
            for size in hidden_sizes:
                layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
                width = size
            return nn.Sequential(*layers), RECURRENT_CELLS[cell](width, hidden_size)

        self.encoder, self.gru = recurrent_core()
        if separate_value:
            self.value_encoder, self.value_gru = recurrent_core()
        self.action_head = nn.Linear(hidden_size, self.action_width)
        self.value_head = nn.Linear(hidden_size, 1)
        # A small action head starts the policy near uniform/zero-mean, so early trials explore.
        nn.init.orthogonal_(self.action_head.weight, gain=0.01)
        nn.init.zeros_(self.action_head.bias)
        self.log_std = (
            None
            if self.discrete_actions
            else nn.Parameter(torch.full((self.action_width,), float(init_log_std)))
        )

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Hidden state at the start of a trial, `[batch_size, hidden_size]` (zeros).

        The one place that decides how a trial starts: the actor records it per trial and the
        learner recomputes the trial from the recorded value.
        """
        return torch.zeros(batch_size, self.hidden_size, device=device)

    def _features(
        self,
        observations: torch.Tensor,
        prev_actions: torch.Tensor,
        prev_rewards: torch.Tensor,
        prev_dones: torch.Tensor,
        episodes_done: torch.Tensor | None,
    ) -> torch.Tensor:
        lead = prev_rewards.shape  # [T, B]
        if self.discrete_observations:
            obs = nn.functional.one_hot(observations.long().reshape(lead), self.observation_width)
        else:
            obs = observations.reshape(*lead, self.observation_width)
        if self.discrete_actions:
            # At a trial's first step the previous action is 0 and the previous done is 0: the
            # done flag of 0 with a reward of 0 is what marks "no previous step", as in the paper.
            act = nn.functional.one_hot(prev_actions.long().reshape(lead), self.action_width)
        else:
            act = prev_actions.reshape(*lead, self.action_width)
        columns = [
            obs.float(),
            act.float(),
            prev_rewards.float().unsqueeze(-1),
            prev_dones.float().unsqueeze(-1),
        ]
        if episodes_done is not None:
            columns.append((episodes_done / self.trial_episodes).unsqueeze(-1))
        return torch.cat(columns, dim=-1)

    def _inputs(
        self,
        observations: torch.Tensor,
        prev_actions: torch.Tensor,
        prev_rewards: torch.Tensor,
        prev_dones: torch.Tensor,
        state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The recurrent cores' input features per step, and the trial's episode count (None
        when the policy does not read its progress)."""
        if prev_rewards.dim() != 2:
            raise ValueError(
                f"RL² policy inputs must be time-major [T, B], got rewards of shape "
                f"{tuple(prev_rewards.shape)}"
            )
        episodes_done = None
        if self.trial_episodes is not None:
            # A done flag read at step t closed an episode before t: the count at t includes it.
            episodes_done = state[:, -1] + torch.cumsum(prev_dones.float(), dim=0)
        features = self._features(
            observations, prev_actions, prev_rewards, prev_dones, episodes_done
        )
        return features, episodes_done

    def values(
        self,
        observations: torch.Tensor,
        prev_actions: torch.Tensor,
        prev_rewards: torch.Tensor,
        prev_dones: torch.Tensor,
        state: torch.Tensor,
    ) -> torch.Tensor:
        """The values [T, B] of `forward`, from the separate value network alone: it shares no
        parameter with the action side, so a learner can train it while another trains that."""
        if not self.separate_value:
            raise ValueError("RL² policy.values needs a separate value network; use forward")
        features, _ = self._inputs(observations, prev_actions, prev_rewards, prev_dones, state)
        value_state = state[:, self.gru_size : 2 * self.gru_size]
        value_outputs, _ = self.value_gru(self.value_encoder(features), value_state.unsqueeze(0))
        return self.value_head(value_outputs).squeeze(-1)

    def forward(
        self,
        observations: torch.Tensor,
        prev_actions: torch.Tensor,
        prev_rewards: torch.Tensor,
        prev_dones: torch.Tensor,
        state: torch.Tensor,
        compute_values: bool = True,
    ) -> tuple[Distribution, torch.Tensor | None, torch.Tensor]:
        """Run `T` steps from `state` ([B, hidden_size]); returns (action distribution over
        [T, B], values [T, B], final state [B, hidden_size]).

        `compute_values=False` (sampling) returns None for the values and, with a separate value
        GRU, skips it: the value half of the returned state is `state`'s, not advanced.
        """
        features, episodes_done = self._inputs(
            observations, prev_actions, prev_rewards, prev_dones, state)
        policy_state = state[:, : self.gru_size]
        outputs, final = self.gru(self.encoder(features), policy_state.unsqueeze(0))
        final = final.squeeze(0)
        values = None
        if not self.separate_value:
            if compute_values:
                values = self.value_head(outputs).squeeze(-1)
        else:
            value_state = state[:, self.gru_size : 2 * self.gru_size]
            if compute_values:
                value_outputs, value_final = self.value_gru(
                    self.value_encoder(features), value_state.unsqueeze(0)
                )
                values = self.value_head(value_outputs).squeeze(-1)
                value_state = value_final.squeeze(0)
            final = torch.cat([final, value_state], dim=-1)
        if episodes_done is not None:
            final = torch.cat([final, episodes_done[-1].unsqueeze(-1)], dim=-1)
        head = self.action_head(outputs)
        if self.discrete_actions:
            # No argument validation: it costs more than the forward on per-step sampling batches.
            distribution: Distribution = Categorical(logits=head, validate_args=False)
        else:
            scale = self.log_std.exp().expand_as(head)
            distribution = Independent(
                Normal(head, scale, validate_args=False), 1, validate_args=False
            )
        return distribution, values, final


# How an actor picks its action from the policy's distribution (`rlmeta.rl2.config.ACTION_MODES`):
# `sample` draws from it (training always does; PPO needs it), `mode` takes its most
# probable action (the mean of a Gaussian head).


def mode_actions(distribution: Distribution) -> torch.Tensor:
    """The most probable action of each distribution in the batch: argmax or Gaussian mean."""
    if isinstance(distribution, Categorical):
        return distribution.logits.argmax(dim=-1)
    if isinstance(distribution, Independent) and isinstance(distribution.base_dist, Normal):
        return distribution.base_dist.loc
    raise TypeError(f"no mode for {type(distribution).__name__}; expected Categorical or Normal")


def sample_actions(distribution: Distribution, generator: torch.Generator) -> torch.Tensor:
    """Draw actions from a policy distribution with an explicit generator (exactly reproducible).

    `torch.distributions` cannot take a generator, so the two head types are sampled here.
    """
    if isinstance(distribution, Categorical):
        probs = distribution.probs.to(generator.device)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    if isinstance(distribution, Independent) and isinstance(distribution.base_dist, Normal):
        mean = distribution.base_dist.loc.to(generator.device)
        std = distribution.base_dist.scale.to(generator.device)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device)
        return mean + std * noise
    raise TypeError(f"cannot sample {type(distribution).__name__}; expected Categorical or Normal")
