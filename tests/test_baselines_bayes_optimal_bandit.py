"""rlmeta.baselines.bayes_optimal: the exact Bayes-optimal bandit policy, the ceiling the RL²
bandit rows are compared with. Its dynamic programme merges exchangeable arms; these tests check
it against hand-solved cases, a brute-force programme over ordered arms, and simulation."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rlmeta.baselines import (
    BANDIT_AGENTS,
    BayesOptimalBandit,
    bandit_episode_returns,
    bayes_optimal_trial_value,
)
from rlmeta.tasks import make_task_env, sample_tasks


def brute_force_value(arms: int, pulls: int) -> float:
    """The same Bayes-optimal value, with every arm kept in its own slot (no merging)."""

    @functools.cache
    def value(state: tuple[tuple[int, int], ...], left: int) -> float:
        if left == 0:
            return 0.0
        best = 0.0
        for i, (wins, losses) in enumerate(state):
            p_win = (1 + wins) / (2 + wins + losses)
            won = state[:i] + ((wins + 1, losses),) + state[i + 1:]
            lost = state[:i] + ((wins, losses + 1),) + state[i + 1:]
            best = max(best, p_win * (1 + value(won, left - 1))
                       + (1 - p_win) * value(lost, left - 1))
        return best

    return value(((0, 0),) * arms, pulls)


def test_hand_solved_values() -> None:
    # One pull: any arm wins with prior mean 1/2. One arm: n pulls of mean 1/2 each.
    assert bayes_optimal_trial_value(5, 1) == pytest.approx(0.5)
    assert bayes_optimal_trial_value(1, 7) == pytest.approx(3.5)
    # Two arms, two pulls: after a win stay (2/3), after a loss switch (1/2).
    assert bayes_optimal_trial_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)


@pytest.mark.parametrize("arms, pulls", [(2, 6), (3, 5), (4, 4)])
def test_merging_exchangeable_arms_keeps_the_value(arms: int, pulls: int) -> None:
    assert bayes_optimal_trial_value(arms, pulls) == pytest.approx(brute_force_value(arms, pulls))


def test_value_grows_with_arms_until_every_pull_can_try_a_new_one() -> None:
    values = [bayes_optimal_trial_value(arms, 6) for arms in (2, 3, 6, 9)]
    assert values[0] < values[1] < values[2]
    assert values[3] == pytest.approx(values[2])  # 6 pulls can never touch more than 6 arms


def test_too_long_a_trial_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="1..20 pulls, got 100"):
        bayes_optimal_trial_value(5, 100)
    with pytest.raises(ValueError, match="got 0"):
        BayesOptimalBandit(5, 0, np.random.default_rng(0))


def test_played_on_tasks_it_scores_its_expectation_and_beats_thompson_sampling() -> None:
    arms, pulls, count = 3, 6, 3000
    env = make_task_env("rlmeta/Bandit-v0", arms=arms)
    tasks = sample_tasks(env, count, np.random.default_rng(11))
    optimal = bandit_episode_returns(env, tasks, pulls, BayesOptimalBandit, seed=5)
    optimal = optimal.sum(axis=1)
    thompson = bandit_episode_returns(env, tasks, pulls, BANDIT_AGENTS["thompson"], seed=5)
    thompson = thompson.sum(axis=1)
    standard_error = optimal.std(ddof=1) / np.sqrt(count)
    assert abs(optimal.mean() - bayes_optimal_trial_value(arms, pulls)) < 4 * standard_error
    # Paired on the same tasks: optimal play is ahead of Thompson sampling (which explores more
    # than a 6-pull trial repays) by well over the difference's standard error.
    difference = optimal - thompson
    assert difference.mean() > 4 * difference.std(ddof=1) / np.sqrt(count)
