"""A trained policy in a plain Gymnasium loop: the interface every algorithm's loaded policy has,
and the episodes such a loop records.

The loop (`rlmeta.load` returns a `Policy`; `docs/python-api.md` has the whole example):

    agent = policy.adapt(env, task=task)        # MAML: inner steps; RL²: a new trial
    obs, _ = env.reset(seed=agent.episode_seed(0))
    while True:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        agent.observe(reward, terminated, truncated)
        if terminated or truncated:
            break

`observe` after every step is what RL² needs (its next input is the previous action, reward and
done) and what MAML records to adapt on the caller's own episodes (`agent.episodes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from rlmeta.rollout import Rollout


@dataclass
class Episode:
    """One episode as a Gymnasium loop saw it: step t is (observation, action, reward)."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)  # of the actions, under the actor
    terminated: bool = False  # ended in a terminal state (no bootstrap)
    truncated: bool = False

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))


class EpisodeRecorder:
    """What `act` and `observe` saw, cut into episodes at `terminated or truncated`."""

    def __init__(self) -> None:
        self.finished: list[Episode] = []
        self.current = Episode()

    def on_act(self, observation: np.ndarray, action: Any, log_prob: float) -> None:
        if len(self.current.actions) != len(self.current.rewards):
            raise RuntimeError(
                "act called twice without observe in between; expected observe(reward, "
                "terminated, truncated) after every env.step"
            )
        self.current.observations.append(np.asarray(observation, dtype=np.float32))
        self.current.actions.append(action)
        self.current.log_probs.append(float(log_prob))

    def on_observe(self, reward: float, terminated: bool, truncated: bool) -> None:
        if len(self.current.actions) != len(self.current.rewards) + 1:
            raise RuntimeError(
                "observe called without an act before it; expected act(observation), "
                "env.step(action), observe(reward, terminated, truncated)"
            )
        self.current.rewards.append(float(reward))
        if terminated or truncated:
            self.current.terminated, self.current.truncated = bool(terminated), bool(truncated)
            self.finished.append(self.current)
            self.current = Episode()


def rollout_from_episodes(
    episodes: Sequence[Episode], action_space: gym.Space, task: Any = None, seed: int = 0
) -> Rollout:
    """The `Rollout` (one column per episode, padded) that `rollout.sample_rollout` would have
    produced for these episodes; every episode must be finished and non-empty."""
    if not episodes:
        raise ValueError("no episodes to adapt on; expected at least one finished episode")
    for i, episode in enumerate(episodes):
        if not episode.rewards or len(episode.rewards) != len(episode.actions):
            raise ValueError(f"episode {i} has {len(episode.actions)} actions and "
                             f"{len(episode.rewards)} rewards; expected a non-empty, whole episode")
    discrete = isinstance(action_space, gym.spaces.Discrete)
    horizon, n = max(len(e.rewards) for e in episodes), len(episodes)
    obs_shape = np.shape(episodes[0].observations[0])
    act_shape: tuple[int, ...] = () if discrete else tuple(action_space.shape)
    arrays = {
        "observations": np.zeros((horizon, n, *obs_shape), np.float32),
        "actions": np.zeros((horizon, n, *act_shape), np.int64 if discrete else np.float32),
        "rewards": np.zeros((horizon, n), np.float32),
        "dones": np.zeros((horizon, n), bool),
        "terminated": np.zeros((horizon, n), bool),
        "mask": np.zeros((horizon, n), np.float32),
        "log_probs": np.zeros((horizon, n), np.float32),
        "timesteps": np.zeros((horizon, n), np.int64),
        "episode_index": np.zeros((horizon, n), np.int64),
    }
    for j, episode in enumerate(episodes):
        length = len(episode.rewards)
        arrays["observations"][:length, j] = np.asarray(episode.observations, np.float32)
        arrays["actions"][:length, j] = np.asarray(episode.actions).reshape(length, *act_shape)
        arrays["rewards"][:length, j] = episode.rewards
        arrays["log_probs"][:length, j] = episode.log_probs
        arrays["mask"][:length, j] = 1.0
        arrays["timesteps"][:length, j] = np.arange(length)
        arrays["dones"][length - 1, j] = episode.done
        arrays["terminated"][length - 1, j] = episode.terminated
    return Rollout(**arrays, task=task, seed=seed)


class Policy(Protocol):
    """A trained policy that adapts to a task and acts in a plain Gymnasium loop.

    `adapt` returns a new policy and leaves this one as it was, except that both draw actions
    from one seeded stream: a loop that follows `rlmeta evaluate`'s order of episodes and seeds
    gets its returns exactly.
    """

    adapts_while_acting: bool
    """True where the policy adapts in its own state as it acts (RL²: the hidden state carries
    across the episodes since `reset`), so episodes it played need no `adapt` call; False where
    adapting is a step on recorded episodes (MAML: `adapt(episodes=policy.episodes)`). A loop
    that only knows this protocol (e.g. `rlmeta.vector_agent`) asks this, not the algorithm."""

    def reset(self, seed: int | None = None) -> Policy:
        """Back to the trained, unadapted policy (MAML: θ; RL²: the start of a trial), with no
        recorded episodes; `seed` reseeds the action sampling. Returns this policy."""

    def adapt(
        self,
        env: gym.Env | None = None,
        task: Any = None,
        episodes: Sequence[Episode] | None = None,
        steps: int | None = None,
    ) -> Policy:
        """The policy adapted to a task. MAML: `steps` inner steps (default: as trained), each on
        episodes it samples from `env` (set to `task` when given), or one step on `episodes`
        (e.g. `agent.episodes` of a loop). RL²: a new trial (zero hidden state) on `env`'s task;
        the trial's episodes are the adaptation."""

    def act(self, observation: np.ndarray, deterministic: bool = False) -> Any:
        """The action for `observation` (sampled; the most probable with `deterministic`)."""

    def observe(self, reward: float, terminated: bool, truncated: bool) -> None:
        """What `env.step` returned for the last action: call it after every step."""

    def episode_seed(self, episode: int) -> int | None:
        """The `env.reset(seed=...)` that `rlmeta evaluate` uses for `episode` (counted from 0)
        at this stage: MAML's stage, RL²'s trial; None where it resets without a seed (an RL²
        trial's later episodes continue the env's RNG)."""

    @property
    def episodes(self) -> list[Episode]:
        """The finished episodes recorded by `act`/`observe` since the last `adapt` or `reset`."""
