"""Trained policies behind a vector-env meta-learning agent: Meta-World's `MetaLearningAgent`
(`metaworld.evaluation`), one `rlmeta.inference.Policy` per env index.

The agent's calls map onto the `Policy` protocol, so MAML and RL² both fit without being named:

- `init()`: every env's policy back to its trained, unadapted state (`Policy.reset()`).
- `adapt_action(obs)`: each env's policy acts (sampled); `step(timestep)` then observes the step.
- `adapt()`: a policy that adapts by a step on recorded episodes takes one on the episodes its
  env played since the last `init`/`adapt`; one that adapts while it acts (`adapts_while_acting`,
  e.g. a recurrent policy whose hidden state carries across a trial) carries on as it is.
- `eval_action(obs)`: the adapted policies act (the most probable action by default, as
  Meta-World's evaluation docs advise; "sample" draws as in adaptation).
- `reset(env_mask)`: episodes ended; the policies already saw the ends through `observe`.

The protocol hands the agent no rewards while it evaluates (`eval_action` gets observations
only), yet a policy's next input may be the previous reward and done (RL²), and every `Policy`
expects `observe` after each step. `AgentFeedback` wraps the vector env so each step's rewards,
terminations and truncations reach the agent. Meta-World's own recurrent baselines read the same
values from their observation (`metaworld.wrappers.RNNBasedMetaRLWrapper`); a wrapper on the
side leaves the observation as the policy was trained on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta.inference import Policy

EVAL_ACTIONS = ("mode", "sample")
_AFTER_ADAPT_ACTION, _AFTER_EVAL_ACTION = "adapt_action", "eval_action"


class PolicyAgent:
    """A `metaworld.evaluation.MetaLearningAgent` over one `Policy` per vector-env index.

    `policies[i]` acts for env i and must be its own object (its own recorded episodes and, for
    a recurrent policy, its own hidden state); they may share weights.
    """

    def __init__(self, policies: Sequence[Policy], eval_actions: str = "mode") -> None:
        if not policies:
            raise ValueError("PolicyAgent needs one policy per env; got none")
        if len({id(p) for p in policies}) != len(policies):
            raise ValueError("PolicyAgent needs a distinct policy object per env; expected "
                             "e.g. one algorithm.inference_policy(seed) per env index")
        if eval_actions not in EVAL_ACTIONS:
            raise ValueError(f"eval_actions must be one of {', '.join(EVAL_ACTIONS)}, "
                             f"got {eval_actions!r}")
        self._trained = list(policies)
        self._policies = list(policies)
        self._deterministic_eval = eval_actions == "mode"
        self._last_call: str | None = None

    @property
    def num_envs(self) -> int:
        return len(self._policies)

    @property
    def policies(self) -> list[Policy]:
        """The policies acting now, one per env (adapted after `adapt`)."""
        return list(self._policies)

    # MetaLearningAgent -----------------------------------------------------------------------
    def init(self) -> None:
        self._policies = [policy.reset() for policy in self._trained]
        self._last_call = None

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        actions = self._act(observations, deterministic=False)
        self._last_call = _AFTER_ADAPT_ACTION
        return actions, {}

    def step(self, timestep: Any) -> None:
        if self._last_call != _AFTER_ADAPT_ACTION:
            raise RuntimeError("step(timestep) must follow adapt_action; expected the "
                               "metalearning_evaluation order adapt_action, env.step, step")
        self._observe(timestep.reward, timestep.terminated, timestep.truncated)

    def adapt(self) -> None:
        self._policies = [
            policy if policy.adapts_while_acting else policy.adapt(episodes=policy.episodes)
            for policy in self._policies
        ]
        self._last_call = None

    # Agent -------------------------------------------------------------------------------------
    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        if self._last_call == _AFTER_EVAL_ACTION:
            raise RuntimeError("eval_action called again before the env's step reached the "
                               "agent; wrap the vector env in AgentFeedback(envs, agent)")
        actions = self._act(observations, deterministic=self._deterministic_eval)
        self._last_call = _AFTER_EVAL_ACTION
        return actions

    def reset(self, env_mask: np.ndarray) -> None:
        mask = np.asarray(env_mask)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"env_mask must have shape ({self.num_envs},), got {mask.shape}")
        # Nothing to do: a policy sees its episode end through observe(terminated, truncated),
        # and an episode end is no adaptation boundary (RL²'s trial runs on).

    # Feedback from AgentFeedback ---------------------------------------------------------------
    def on_env_step(
        self, rewards: np.ndarray, terminations: np.ndarray, truncations: np.ndarray
    ) -> None:
        """What the vector env returned for the last actions. Adaptation steps also come through
        `step(timestep)`, which observes them; here only evaluation steps are observed."""
        if self._last_call == _AFTER_EVAL_ACTION:
            self._observe(rewards, terminations, truncations)

    # Internals ---------------------------------------------------------------------------------
    def _act(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        observations = np.asarray(observations)
        if observations.shape[:1] != (self.num_envs,):
            raise ValueError(f"observations must have one row per env ({self.num_envs}), got "
                             f"shape {observations.shape}")
        # Policies act one observation at a time (the Policy protocol); float64 observations
        # are cast to the policies' float32 by `act`.
        actions = [policy.act(obs, deterministic=deterministic)
                   for policy, obs in zip(self._policies, observations, strict=True)]
        return np.stack([np.asarray(a) for a in actions])

    def _observe(self, rewards: Any, terminations: Any, truncations: Any) -> None:
        for policy, reward, terminated, truncated in zip(
            self._policies, np.asarray(rewards), np.asarray(terminations),
            np.asarray(truncations), strict=True,
        ):
            policy.observe(float(reward), bool(terminated), bool(truncated))
        self._last_call = None


class AgentFeedback(gym.vector.VectorWrapper):
    """The vector env, passing each step's rewards, terminations and truncations to
    `agent.on_env_step` (see the module docstring); everything else goes to the wrapped env."""

    def __init__(self, env: gym.vector.VectorEnv, agent: PolicyAgent) -> None:
        super().__init__(env)
        if env.num_envs != agent.num_envs:
            raise ValueError(f"the vector env has {env.num_envs} envs and the agent "
                             f"{agent.num_envs} policies; expected one policy per env")
        self.agent = agent

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        self.agent.on_env_step(rewards, terminations, truncations)
        return observations, rewards, terminations, truncations, infos

    # metalearning_evaluation calls these on the vector env it is given.
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return self.env.call(name, *args, **kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.env.get_attr(name)

    def set_attr(self, name: str, values: Any) -> None:
        self.env.set_attr(name, values)
