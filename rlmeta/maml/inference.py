"""A trained MAML policy in a plain Gymnasium loop (`rlmeta.inference.Policy`).

Adaptation is what `MAMLAlgorithm.evaluate_task` does, one stage at a time: sample
`episodes_per_task` episodes with the current parameters (episode j of stage k reset with
`stage_seed(seed, EVAL, k) + j`), take an inner step with the evaluation step size of step k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta.inference import Episode, EpisodeRecorder, rollout_from_episodes
from rlmeta.maml.algorithm import EVAL, MAMLAlgorithm, stage_seed
from rlmeta.policies import CategoricalMLPPolicy, FeedForwardActor, Params
from rlmeta.rollout import set_task_on

_NO_PREVIOUS = np.zeros(1)  # a feed-forward actor ignores the previous action, reward and done


class MAMLPolicy:
    """θ (or θ' after `adapt`) acting one observation at a time; see `rlmeta.inference.Policy`."""

    adapts_while_acting = False  # it adapts by an inner step on recorded episodes

    def __init__(self, algorithm: MAMLAlgorithm, seed: int = 0) -> None:
        self._algorithm = algorithm
        self._meta_params: Params = {
            name: p.detach().cpu().clone() for name, p in algorithm.policy.named_parameters()
        }
        self.generator = torch.Generator()
        self.seed = seed
        self.reset(seed)

    @property
    def steps(self) -> int:
        """Inner steps taken from θ."""
        return self._steps

    @property
    def params(self) -> Params:
        """The parameters acting now (θ, or θ' after `adapt`)."""
        return dict(self._params)

    def reset(self, seed: int | None = None) -> MAMLPolicy:
        if seed is not None:
            self.generator.manual_seed(seed)
            self.seed = seed
        self._set(self._meta_params, 0)
        return self

    def _set(self, params: Params, steps: int) -> None:
        self._params, self._steps = params, steps
        self._actor = FeedForwardActor(self._algorithm.policy, params, self.generator)
        self._recorder = EpisodeRecorder()

    def _adapted(self, params: Params, steps: int) -> MAMLPolicy:
        adapted = object.__new__(MAMLPolicy)
        adapted._algorithm, adapted._meta_params = self._algorithm, self._meta_params
        adapted.generator, adapted.seed = self.generator, self.seed
        adapted._set(params, steps)
        return adapted

    def adapt(
        self,
        env: gym.Env | None = None,
        task: Any = None,
        episodes: Sequence[Episode] | None = None,
        steps: int | None = None,
    ) -> MAMLPolicy:
        algorithm = self._algorithm
        if episodes is not None or env is None:
            if env is not None or task is not None or steps not in (None, 1):
                raise ValueError("adapt takes either an env (and task, steps) to sample from, or "
                                 "episodes for one inner step; got both")
            episodes = self.episodes if episodes is None else list(episodes)
            rollout = rollout_from_episodes(episodes, algorithm.action_space)
            params = algorithm.adapted_params(
                self._params, rollout, algorithm.eval_step_size(self._steps))
            return self._adapted(params, self._steps + 1)
        steps = algorithm.maml.inner_steps if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if task is not None:
            set_task_on([env], task, 0)
        params = self._params
        for k in range(self._steps, self._steps + steps):
            rollout = algorithm.sample_stage(
                [env], params, self.generator, self.episode_seed(0, stage=k), task)
            params = algorithm.adapted_params(params, rollout, algorithm.eval_step_size(k))
        return self._adapted(params, self._steps + steps)

    def act(self, observation: np.ndarray, deterministic: bool = False) -> Any:
        batch = np.asarray(observation, dtype=np.float32)[None]
        if deterministic:
            action, log_prob = self._mode(batch)
        else:
            actions, log_probs = self._actor.act(batch, _NO_PREVIOUS, [0.0], [0.0])
            action, log_prob = actions[0], float(log_probs[0])
        self._recorder.on_act(batch[0], action, log_prob)
        return int(action) if self._actor.action_dtype.kind == "i" else action

    def _mode(self, batch: np.ndarray) -> tuple[Any, float]:
        policy = self._actor.policy
        with torch.no_grad():
            distribution = policy.distribution(torch.as_tensor(batch))
            if isinstance(policy, CategoricalMLPPolicy):
                action = distribution.probs.argmax(-1)
            else:
                action = distribution.base_dist.loc
            log_prob = float(distribution.log_prob(action)[0])
        return action[0].numpy().astype(self._actor.action_dtype), log_prob

    def observe(self, reward: float, terminated: bool, truncated: bool) -> None:
        self._recorder.on_observe(reward, terminated, truncated)

    def episode_seed(self, episode: int, stage: int | None = None) -> int:
        return stage_seed(self.seed, EVAL, self._steps if stage is None else stage) + episode

    @property
    def episodes(self) -> list[Episode]:
        return list(self._recorder.finished)
