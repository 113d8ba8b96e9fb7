"""Classic baselines for the RL² tables (Duan et al. 2016, Tables 1 and 2), run through rlmeta's
own task envs so they see exactly the tasks and reward noise the RL² policy sees.

Bandits: random, UCB1 (Auer et al. 2002), Thompson sampling with a Beta(1, 1) prior, greedy and
ε-greedy on the Beta(1, 1) posterior mean, the finite-horizon Gittins index policy (near-optimal,
for any trial length), and, where the trial is short enough to solve exactly, the Bayes-optimal
policy: no policy has a higher expected trial reward on this task distribution.
Tabular MDPs: random, greedy / ε-greedy with respect to a model of posterior-mean rewards
(prior N(1, 1), the task distribution's own) and posterior-mean transitions (flat Dirichlet
prior), and posterior sampling (PSRL: the same posteriors, one model drawn per episode), each
re-planned by finite-horizon value iteration at the start of each episode. None of these
is tuned per setting, unlike the paper's.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta.tasks import set_task


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> int:
    best = np.flatnonzero(values == values.max())
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])


class BanditAgent:
    """Counts of pulls and successes per arm; subclasses choose the next arm. `horizon` is the
    number of pulls in the trial (only the Bayes-optimal agent uses it)."""

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
    def select(self) -> int:
        return int(self.rng.integers(len(self.pulls)))


class UCB1(BanditAgent):
    """Auer et al. 2002: each arm once, then argmax of mean + sqrt(2 ln t / n_i)."""

    def select(self) -> int:
        untried = np.flatnonzero(self.pulls == 0)
        if len(untried):
            return int(untried[self.rng.integers(len(untried))])
        t = self.pulls.sum()
        return _argmax_random_ties(self.wins / self.pulls + np.sqrt(2 * np.log(t) / self.pulls),
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
        return _argmax_random_ties((1 + self.wins) / (2 + self.pulls), self.rng)


class EpsilonGreedyBandit(GreedyBandit):
    epsilon = 0.1


# Bayes-optimal play of a Bernoulli bandit whose arm means are i.i.d. Uniform[0, 1] = Beta(1, 1),
# for a known number of pulls. The posterior of an arm is Beta(1 + wins, 1 + losses), so the
# state of knowledge is each arm's (wins, losses). Arms are exchangeable, so a state is the
# sorted tuple of the pulled arms' (wins, losses) plus the number of arms not yet pulled; that
# keeps a 10-pull trial to a few thousand states whatever the number of arms (a 100-pull one
# would need far more than this machine's memory, so the n = 100 rows have no such column).
ArmState = tuple[int, int]
BAYES_OPTIMAL_MAX_PULLS = 20


def bayes_arm_value(pulled: tuple[ArmState, ...], unpulled: int, left: int, arm: ArmState) -> float:
    """Expected reward of the `left` remaining pulls when the next pull is an arm in posterior
    state `arm` (`(0, 0)`: an unpulled one) and every later pull is Bayes-optimal."""
    wins, losses = arm
    p_win = (1 + wins) / (2 + wins + losses)  # posterior mean of a Beta(1 + wins, 1 + losses)
    others = list(pulled)
    if arm == (0, 0):
        unpulled -= 1
    else:
        others.remove(arm)
    after_win = tuple(sorted([*others, (wins + 1, losses)]))
    after_loss = tuple(sorted([*others, (wins, losses + 1)]))
    return p_win * (1.0 + bayes_value(after_win, unpulled, left - 1)) + (1.0 - p_win) * (
        bayes_value(after_loss, unpulled, left - 1)
    )


@functools.cache
def bayes_value(pulled: tuple[ArmState, ...], unpulled: int, left: int) -> float:
    """Expected reward of `left` Bayes-optimal pulls from a state of knowledge (see above)."""
    if left == 0:
        return 0.0
    candidates = set(pulled) | ({(0, 0)} if unpulled else set())
    return max(bayes_arm_value(pulled, unpulled, left, arm) for arm in candidates)


def bayes_optimal_trial_value(arms: int, pulls: int) -> float:
    """The highest expected total reward any policy can get in a `pulls`-long trial with `arms`
    arms, the task distribution's own prior: the ceiling for every column of a bandit row."""
    _check_solvable(pulls)
    return bayes_value((), arms, pulls)


def _check_solvable(pulls: int) -> None:
    if not 1 <= pulls <= BAYES_OPTIMAL_MAX_PULLS:
        raise ValueError(
            f"exact Bayes-optimal play is solved for 1..{BAYES_OPTIMAL_MAX_PULLS} pulls, "
            f"got {pulls}"
        )


class BayesOptimalBandit(BanditAgent):
    """Pulls the arm with the highest Bayes-optimal value of the pulls left (ties at random)."""

    def __init__(self, arms: int, horizon: int, rng: np.random.Generator) -> None:
        _check_solvable(horizon)
        super().__init__(arms, horizon, rng)

    def select(self) -> int:
        states = [(int(w), int(n - w)) for w, n in zip(self.wins, self.pulls, strict=True)]
        pulled = tuple(sorted(s for s, n in zip(states, self.pulls, strict=True) if n > 0))
        unpulled = int((self.pulls == 0).sum())
        left = self.horizon - int(self.pulls.sum())
        value = {s: bayes_arm_value(pulled, unpulled, left, s) for s in set(states)}
        return _argmax_random_ties(np.array([value[s] for s in states]), self.rng)


# The finite-horizon Gittins index (e.g. Niño-Mora 2011, "Computing a classic index for
# finite-horizon bandits"): the index of an arm in posterior state (wins, losses) with m pulls
# left is the reward rate λ of a known arm at which a player with only these two arms and m pulls
# is indifferent between pulling the unknown arm now and taking λ for all m pulls. Pulling the
# highest index is not exactly Bayes-optimal across several arms (3 arms × 12 pulls: 7.8013
# against 7.8025), but it is the standard near-optimal policy, and it is solvable for 100 pulls
# where exact play is not.
GITTINS_GRID = 1001  # λ values on [0, 1]; each index is refined by linear interpolation.


@functools.cache
def finite_horizon_gittins_indices(pulls: int) -> np.ndarray:
    """Index of every arm state reachable in a `pulls`-long trial: `[m, wins, losses]` for m
    pulls left (1..pulls) and wins + losses <= pulls - m; other entries are NaN.

    One dynamic programme per value of λ on a grid, all at once: with m pulls left, the
    one-armed value is V_m = max(m λ, Q_m) where Q_m = p (1 + V_{m-1}(win)) + (1 - p)
    V_{m-1}(loss) pulls the unknown arm once (p is its posterior mean) and plays on optimally.
    Q_m - m λ falls strictly as λ grows, and the index is where it crosses zero.
    """
    if pulls < 1:
        raise ValueError(f"Gittins indices need pulls >= 1, got {pulls}")
    rates = np.linspace(0.0, 1.0, GITTINS_GRID)[:, None, None]
    wins = np.arange(pulls + 1)[:, None]
    losses = np.arange(pulls + 1)[None, :]
    indices = np.full((pulls + 1, pulls + 1, pulls + 1), np.nan)
    value = np.zeros((GITTINS_GRID, pulls + 2, pulls + 2))  # V_0 = 0 for every state and λ
    for left in range(1, pulls + 1):
        n = pulls - left + 1  # states with wins + losses <= pulls - left fit in [0, n)²
        p_win = ((1 + wins[:n]) / (2 + wins[:n] + losses[:, :n]))[None]
        pull_now = p_win * (1.0 + value[:, 1 : n + 1, :n]) + (1.0 - p_win) * value[:, :n, 1 : n + 1]
        margin = pull_now - left * rates
        # First grid λ where pulling no longer beats the known arm (margin(1) <= 0 always).
        above = np.maximum(np.argmax(margin <= 0, axis=0), 1)
        before = np.take_along_axis(margin, (above - 1)[None], 0)[0]
        after = np.take_along_axis(margin, above[None], 0)[0]
        low, high = rates[above - 1, 0, 0], rates[above, 0, 0]
        indices[left, :n, :n] = low + (high - low) * before / (before - after)
        value = np.maximum(pull_now, left * rates)
    return indices


class GittinsBandit(BanditAgent):
    """Pulls the arm with the highest finite-horizon Gittins index for the pulls left."""

    def __init__(self, arms: int, horizon: int, rng: np.random.Generator) -> None:
        super().__init__(arms, horizon, rng)
        self.indices = finite_horizon_gittins_indices(horizon)

    def select(self) -> int:
        left = self.horizon - int(self.pulls.sum())
        wins = self.wins.astype(int)
        return _argmax_random_ties(self.indices[left, wins, self.pulls.astype(int) - wins],
                                   self.rng)


BANDIT_AGENTS: dict[str, type[BanditAgent]] = {
    "random": RandomBandit,
    "ucb1": UCB1,
    "thompson": ThompsonBandit,
    "greedy": GreedyBandit,
    "eps_greedy": EpsilonGreedyBandit,
    "gittins": GittinsBandit,
}


def bandit_episode_returns(
    env: gym.Env, tasks: list[Any], pulls: int, agent_cls: type[BanditAgent], seed: int
) -> np.ndarray:
    """Reward of each pull (a one-step episode) of one `pulls`-long trial per task,
    `[tasks, pulls]`; the env's reset seed is `seed + i`."""
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
        return _argmax_random_ties(self.q[t, state], self.rng)

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
    MDP_POLICIES, `[tasks, episodes]`."""
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


MDP_POLICIES: dict[str, float] = {"random": 1.0, "greedy": 0.0, "eps_greedy": 0.1, "psrl": 0.0}
"""Policy name -> ε; random (ε = 1) draws every action uniformly and never plans."""
POSTERIOR_SAMPLING = {"psrl"}
"""Policies that plan each episode on a model drawn from the posterior (Osband et al. 2013)
rather than on its mean."""
