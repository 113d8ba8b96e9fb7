"""Bernoulli-bandit baselines, played on rlmeta's bandit task envs (`rlmeta/Bandit-v0`).

Every agent keeps the counts of pulls and wins of each arm and picks the next arm from them:

- random: an arm drawn uniformly;
- UCB1 (Auer, Cesa-Bianchi and Fischer 2002, "Finite-time analysis of the multiarmed bandit
  problem"): each arm once, then the highest mean + sqrt(2 ln t / n_i);
- Thompson sampling (Thompson 1933, "On the likelihood that one unknown probability exceeds
  another in view of the evidence of two samples"): the highest draw from each arm's
  Beta(1 + wins, 1 + losses) posterior;
- greedy and ε-greedy (ε = 0.1; Sutton and Barto 2018, Sec. 2.2): the highest Beta(1, 1)
  posterior mean, and with ε-greedy a random arm with probability ε;
- Gittins: the highest finite-horizon Gittins index for the pulls left
  (`rlmeta.baselines.gittins`), near-optimal for any trial length;
- Bayes-optimal: the highest exact Bayes-optimal value of the pulls left
  (`rlmeta.baselines.bayes_optimal`), for trials of up to `BAYES_OPTIMAL_MAX_PULLS` pulls.

The Beta(1, 1) prior is the task distribution's own (arm means i.i.d. Uniform[0, 1]; Duan et al.
2016, "RL²", Sec. 4.1). None of the agents is tuned per setting.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta.baselines.bayes_optimal import bayes_arm_value, check_solvable
from rlmeta.baselines.gittins import finite_horizon_gittins_indices
from rlmeta.baselines.ties import argmax_random_ties
from rlmeta.tasks import set_task


class BanditAgent:
    """Counts of pulls and successes per arm; subclasses choose the next arm. `horizon` is the
    number of pulls in the trial (only the Gittins and Bayes-optimal agents use it)."""

    def __init__(self, arms: int, horizon: int, rng: np.random.Generator) -> None:
        self.pulls = np.zeros(arms)
        self.wins = np.zeros(arms)
        self.horizon = horizon
        self.rng = rng

    def select(self) -> int:
        raise NotImplementedError

    def observe(self, arm: int, reward: float) -> None:
        self.pulls[arm] += 1
        self.wins[arm] += reward


class RandomBandit(BanditAgent):
    """An arm drawn uniformly at every pull."""

    def select(self) -> int:
        return int(self.rng.integers(len(self.pulls)))


class UCB1(BanditAgent):
    """Auer et al. 2002: each arm once, then argmax of mean + sqrt(2 ln t / n_i)."""

    def select(self) -> int:
        untried = np.flatnonzero(self.pulls == 0)
        if len(untried):
            return int(untried[self.rng.integers(len(untried))])
        t = self.pulls.sum()
        return argmax_random_ties(self.wins / self.pulls + np.sqrt(2 * np.log(t) / self.pulls),
                                  self.rng)


class ThompsonBandit(BanditAgent):
    """Thompson sampling from the Beta(1 + wins, 1 + losses) posterior of each arm."""

    def select(self) -> int:
        return int(np.argmax(self.rng.beta(1 + self.wins, 1 + self.pulls - self.wins)))


class GreedyBandit(BanditAgent):
    """Argmax of the Beta(1, 1) posterior mean; with `epsilon`, a random arm that often."""

    epsilon = 0.0

    def select(self) -> int:
        if self.epsilon and self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(self.pulls)))
        return argmax_random_ties((1 + self.wins) / (2 + self.pulls), self.rng)


class EpsilonGreedyBandit(GreedyBandit):
    """Greedy, but a uniformly drawn arm on a tenth of the pulls."""

    epsilon = 0.1


class GittinsBandit(BanditAgent):
    """Pulls the arm with the highest finite-horizon Gittins index for the pulls left."""

    def __init__(self, arms: int, horizon: int, rng: np.random.Generator) -> None:
        super().__init__(arms, horizon, rng)
        self.indices = finite_horizon_gittins_indices(horizon)

    def select(self) -> int:
        left = self.horizon - int(self.pulls.sum())
        wins = self.wins.astype(int)
        return argmax_random_ties(self.indices[left, wins, self.pulls.astype(int) - wins],
                                  self.rng)


class BayesOptimalBandit(BanditAgent):
    """Pulls the arm with the highest Bayes-optimal value of the pulls left (ties at random);
    ValueError for a trial longer than `BAYES_OPTIMAL_MAX_PULLS`."""

    def __init__(self, arms: int, horizon: int, rng: np.random.Generator) -> None:
        check_solvable(horizon)
        super().__init__(arms, horizon, rng)

    def select(self) -> int:
        states = [(int(w), int(n - w)) for w, n in zip(self.wins, self.pulls, strict=True)]
        pulled = tuple(sorted(s for s, n in zip(states, self.pulls, strict=True) if n > 0))
        unpulled = int((self.pulls == 0).sum())
        left = self.horizon - int(self.pulls.sum())
        value = {s: bayes_arm_value(pulled, unpulled, left, s) for s in set(states)}
        return argmax_random_ties(np.array([value[s] for s in states]), self.rng)


BANDIT_AGENTS: dict[str, type[BanditAgent]] = {
    "random": RandomBandit,
    "ucb1": UCB1,
    "thompson": ThompsonBandit,
    "greedy": GreedyBandit,
    "eps_greedy": EpsilonGreedyBandit,
    "gittins": GittinsBandit,
}
"""The agents that play a trial of any length, by name (Bayes-optimal is apart: it is solved
only for short trials)."""


def bandit_episode_returns(
    env: gym.Env, tasks: list[Any], pulls: int, agent_cls: type[BanditAgent], seed: int
) -> np.ndarray:
    """Reward of each pull (a one-step episode) of one `pulls`-long trial per task,
    `[tasks, pulls]`. The env's reset seed is `seed + i` and the agent's RNG
    `default_rng([seed, i])` for task i, so the figures are reproducible."""
    arms = int(env.action_space.n)
    returns = np.zeros((len(tasks), pulls))
    for i, task in enumerate(tasks):
        set_task(env, task)
        env.reset(seed=seed + i)
        agent = agent_cls(arms, pulls, np.random.default_rng([seed, i]))
        for pull in range(pulls):
            arm = agent.select()
            _, reward, terminated, truncated, _ = env.step(arm)
            agent.observe(arm, float(reward))
            returns[i, pull] = reward
            if terminated or truncated:
                env.reset()
    return returns
