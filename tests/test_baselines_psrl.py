"""rlmeta.baselines.tabular_mdp: posterior sampling (PSRL) for the tabular-MDP rows plans on one
model drawn from the same posterior the greedy planner takes the mean of."""

from __future__ import annotations

import numpy as np

from rlmeta.baselines import MDPModelAgent

STATES, ACTIONS, HORIZON = 4, 3, 5


def agents_after(observations: int, seed: int) -> tuple[MDPModelAgent, MDPModelAgent]:
    """A posterior-sampling and a posterior-mean agent that saw the same `observations` steps
    (every state-action pair the same number of times) of one random task."""
    task_rng = np.random.default_rng(0)
    rewards = task_rng.normal(1.0, 1.0, size=(STATES, ACTIONS))
    transitions = task_rng.dirichlet(np.ones(STATES), size=(STATES, ACTIONS))
    sampling = MDPModelAgent(STATES, ACTIONS, HORIZON, 0.0, np.random.default_rng(seed),
                             sample_model=True)
    mean = MDPModelAgent(STATES, ACTIONS, HORIZON, 0.0, np.random.default_rng(seed))
    for _ in range(observations):
        for s in range(STATES):
            for a in range(ACTIONS):
                reward = rewards[s, a] + task_rng.standard_normal()
                next_state = task_rng.choice(STATES, p=transitions[s, a])
                for agent in (sampling, mean):
                    agent.observe(s, a, reward, next_state)
    return sampling, mean


def test_with_no_data_each_episode_plans_on_a_different_model() -> None:
    sampling, mean = agents_after(0, seed=1)
    sampling.plan()
    first = sampling.q.copy()
    sampling.plan()
    assert np.abs(sampling.q - first).max() > 0.1
    mean.plan()
    mean_q = mean.q.copy()
    mean.plan()
    assert np.array_equal(mean.q, mean_q)


def test_with_much_data_the_drawn_model_plans_like_the_posterior_mean() -> None:
    sampling, mean = agents_after(4000, seed=2)
    sampling.plan()
    mean.plan()
    # The posterior has concentrated: the drawn model's values sit near the mean model's.
    assert np.abs(sampling.q - mean.q).max() < 0.1
