"""Tabular-MDP baselines, played on rlmeta's random tabular MDPs (`rlmeta/TabularMDP-v0`).

Each agent keeps the counts of the state-action pairs it tried, their reward sums and their
observed transitions, and holds the Bayesian posterior of the task they imply, with the task
distribution's own priors (Duan et al. 2016, "RL²", Sec. 4.2): N(1, 1) on each mean reward
(unit reward noise) and a flat Dirichlet on each transition row. At the start of every episode
it plans on a model of the task by finite-horizon value iteration (Bellman 1957, "Dynamic
Programming"), then acts on the plan for the whole episode:

- random: an action drawn uniformly at every step, never planning;
- greedy and ε-greedy (ε = 0.1): on the posterior-mean model;
- PSRL, posterior sampling for reinforcement learning (Strens 2000, "A Bayesian framework for
  reinforcement learning"; Osband, Russo and Van Roy 2013, "(More) efficient reinforcement
  learning via posterior sampling"): on one model drawn from the posterior per episode.

None of them is tuned per setting.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta.baselines.ties import argmax_random_ties
from rlmeta.tasks import set_task

MDP_POLICIES: dict[str, float] = {"random": 1.0, "greedy": 0.0, "eps_greedy": 0.1, "psrl": 0.0}
"""Policy name -> ε; random (ε = 1) draws every action uniformly and never plans."""
POSTERIOR_SAMPLING = {"psrl"}
"""Policies that plan each episode on a model drawn from the posterior rather than on its
mean."""


class MDPModelAgent:
    """Greedy (or ε-greedy) w.r.t. a model of the task, re-planned each episode: the posterior
    mean, or with `sample_model` one draw from the posterior (posterior sampling, PSRL)."""

    def __init__(
        self,
        states: int,
        actions: int,
        horizon: int,
        epsilon: float,
        rng: np.random.Generator,
        sample_model: bool = False,
    ) -> None:
        self.counts = np.zeros((states, actions))
        self.reward_sums = np.zeros((states, actions))
        self.transition_counts = np.zeros((states, actions, states))
        self.horizon = horizon
        self.epsilon = epsilon
        self.rng = rng
        self.sample_model = sample_model
        self.q = np.zeros((horizon, states, actions))

    def plan(self) -> None:
        """Value iteration over the episode's `horizon` steps on the model, into `self.q`."""
        # Posteriors: reward prior N(1, 1) with unit noise -> N((sum + 1) / (n + 1), 1 / (n + 1));
        # flat Dirichlet prior on each transition row -> Dirichlet(counts + 1), mean
        # (counts + 1) / (n + S).
        rewards = (self.reward_sums + 1.0) / (self.counts + 1.0)
        states = self.transition_counts.shape[-1]
        if self.sample_model:
            rewards = rewards + self.rng.standard_normal(rewards.shape) / np.sqrt(self.counts + 1)
            # A Dirichlet draw is a row of Gamma(α, 1) draws, normalised.
            gammas = self.rng.standard_gamma(self.transition_counts + 1.0)
            transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        else:
            transitions = (self.transition_counts + 1.0) / (self.counts[..., None] + states)
        value = np.zeros(states)
        for t in range(self.horizon - 1, -1, -1):
            self.q[t] = rewards + transitions @ value
            value = self.q[t].max(axis=1)

    def select(self, state: int, t: int) -> int:
        if self.epsilon and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.q.shape[-1]))
        return argmax_random_ties(self.q[t, state], self.rng)

    def observe(self, state: int, action: int, reward: float, next_state: int) -> None:
        self.counts[state, action] += 1
        self.reward_sums[state, action] += reward
        self.transition_counts[state, action, next_state] += 1


def mdp_episode_returns(
    env: gym.Env,
    tasks: list[Any],
    episodes: int,
    policy: str,
    seed: int,
) -> np.ndarray:
    """Return of each episode of one `episodes`-long trial per task for `policy` in
    MDP_POLICIES, `[tasks, episodes]`. The env's reset seed is `seed + i` and the agent's RNG
    `default_rng([seed, i])` for task i, so the figures are reproducible."""
    inner = env.unwrapped
    states, actions, horizon = int(inner.states), int(inner.actions), int(inner.horizon)
    returns = np.zeros((len(tasks), episodes))
    for i, task in enumerate(tasks):
        set_task(env, task)
        rng = np.random.default_rng([seed, i])
        agent = MDPModelAgent(states, actions, horizon, MDP_POLICIES[policy], rng,
                              sample_model=policy in POSTERIOR_SAMPLING)
        obs, _ = env.reset(seed=seed + i)
        for episode in range(episodes):
            if agent.epsilon < 1.0:
                agent.plan()
            state, t, done = int(np.argmax(obs)), 0, False
            while not done:
                action = agent.select(state, t)
                obs, reward, terminated, truncated, _ = env.step(action)
                next_state = int(np.argmax(obs))
                agent.observe(state, action, float(reward), next_state)
                returns[i, episode] += reward
                state, t, done = next_state, t + 1, terminated or truncated
            obs, _ = env.reset()
    return returns
