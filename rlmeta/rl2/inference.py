"""A trained RL² policy in a plain Gymnasium loop (`rlmeta.inference.Policy`).

The hidden state carries across the episodes of a trial; each step's input is the observation
with the previous action, reward and done, which `observe` supplies. A trial is what
`RL2Algorithm.evaluate_task` samples: trial i's first episode resets with `seed + i`, its later
episodes continue the env's RNG, actions as `rl2.eval_actions` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta.inference import Episode, EpisodeRecorder
from rlmeta.rl2.actor import RecurrentActor
from rlmeta.rl2.algorithm import RL2Algorithm
from rlmeta.rollout import set_task_on

_SLOT = np.zeros(1, dtype=np.int64)  # the loop is one env: slot 0


class RL2Policy:
    """The recurrent policy acting one observation at a time; see `rlmeta.inference.Policy`."""

    adapts_while_acting = True  # the hidden state reads every step of the trial

    def __init__(self, algorithm: RL2Algorithm, seed: int = 0) -> None:
        self._algorithm = algorithm
        self.generator = torch.Generator()
        self._actor = RecurrentActor(
            algorithm.policy, self.generator, algorithm.settings.eval_actions)
        self.seed, self.trial = seed, 0
        self.reset(seed)

    @property
    def hidden_state(self) -> torch.Tensor:
        """The recurrent state now, `[hidden_size]`."""
        return self._actor.hidden_state[0]

    def reset(self, seed: int | None = None) -> RL2Policy:
        """A new trial (zero hidden state); `seed` reseeds the actions and counts trials from 0,
        otherwise this is the next trial of the same seed."""
        if seed is not None:
            self.generator.manual_seed(seed)
            self.seed, self.trial = seed, 0
        else:
            self.trial += 1
        self._actor.start_sequences(_SLOT)
        space = self._algorithm.action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        shape = () if discrete else tuple(space.shape)
        self._prev_action = np.zeros((1, *shape), dtype=np.int64 if discrete else np.float32)
        self._prev_reward, self._prev_done = 0.0, 0.0
        self._episode = 0
        self._recorder = EpisodeRecorder()
        return self

    def adapt(
        self,
        env: gym.Env | None = None,
        task: Any = None,
        episodes: Sequence[Episode] | None = None,
        steps: int | None = None,
    ) -> RL2Policy:
        """A new trial on `env`'s task (set to `task` when given), its trials counted from 0,
        sharing this policy's seed and action stream. RL² adapts in its hidden state as it
        acts, so it takes no episodes or steps."""
        if episodes is not None or steps is not None:
            raise ValueError("RL² adapts in its hidden state while it acts; adapt takes an env "
                             "and task, not episodes or steps")
        if env is not None and task is not None:
            set_task_on([env], task, 0)
        trial = object.__new__(RL2Policy)
        trial._algorithm, trial.generator = self._algorithm, self.generator
        trial._actor = RecurrentActor(
            self._algorithm.policy, self.generator, self._algorithm.settings.eval_actions)
        trial.seed, trial.trial = self.seed, -1  # reset() below starts trial 0
        return trial.reset()

    def act(self, observation: np.ndarray, deterministic: bool = False) -> Any:
        batch = np.asarray(observation, dtype=np.float32)[None]
        configured = self._actor.actions
        self._actor.actions = "mode" if deterministic else configured
        try:
            actions, log_probs = self._actor.act(
                batch, self._prev_action, [self._prev_reward], [self._prev_done])
        finally:
            self._actor.actions = configured
        self._prev_action, self._prev_done = actions, 0.0
        action = actions[0]
        self._recorder.on_act(batch[0], action, float(log_probs[0]))
        return int(action) if actions.dtype.kind == "i" else action

    def observe(self, reward: float, terminated: bool, truncated: bool) -> None:
        self._recorder.on_observe(reward, terminated, truncated)
        self._prev_reward = float(reward)
        if terminated or truncated:
            self._prev_done = 1.0
            self._episode += 1

    def episode_seed(self, episode: int | None = None) -> int | None:
        """`seed + trial` for a trial's first episode, None for the others (default: the
        episode the trial is at)."""
        episode = self._episode if episode is None else episode
        return self.seed + self.trial if episode == 0 else None

    @property
    def episodes(self) -> list[Episode]:
        return list(self._recorder.finished)
