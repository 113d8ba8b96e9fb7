"""rlmeta.baselines.gittins: the finite-horizon Gittins index policy, the near-optimal
baseline of the n = 100 bandit rows, where exact Bayes-optimal play is out of reach. Its indices
are checked against the one-armed problem that defines them, and its play against the exact
Bayes-optimal value where that is solvable."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rlmeta.baselines import (
    bayes_optimal_trial_value,
    finite_horizon_gittins_indices,
)


def one_armed_index(wins: int, losses: int, left: int) -> float:
    """The index by its definition: bisect on the known arm's rate λ until pulling the unknown
    arm once (then playing on optimally) is worth exactly `left` pulls of λ."""

    def pull_now_minus_known(rate: float) -> float:
        @functools.cache
        def value(w: int, lo: int, m: int) -> float:
            if m == 0:
                return 0.0
            return max(m * rate, pull(w, lo, m))

        def pull(w: int, lo: int, m: int) -> float:
            p_win = (1 + w) / (2 + w + lo)
            return p_win * (1 + value(w + 1, lo, m - 1)) + (1 - p_win) * value(w, lo + 1, m - 1)

        return pull(wins, losses, left) - left * rate

    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if pull_now_minus_known(middle) > 0 else (low, middle)
    return low


def gittins_policy_value(arms: int, pulls: int) -> float:
    """Exact expected trial reward of pulling the highest index (ties split evenly)."""
    indices = finite_horizon_gittins_indices(pulls)

    @functools.cache
    def value(state: tuple[tuple[int, int], ...], left: int) -> float:
        if left == 0:
            return 0.0
        scores = [indices[left, wins, losses] for wins, losses in state]
        chosen = [i for i, score in enumerate(scores) if score == max(scores)]
        total = 0.0
        for i in chosen:
            wins, losses = state[i]
            p_win = (1 + wins) / (2 + wins + losses)
            won = state[:i] + ((wins + 1, losses),) + state[i + 1:]
            lost = state[:i] + ((wins, losses + 1),) + state[i + 1:]
            total += p_win * (1 + value(won, left - 1)) + (1 - p_win) * value(lost, left - 1)
        return total / len(chosen)

    return value(((0, 0),) * arms, pulls)


def test_with_one_pull_left_the_index_is_the_posterior_mean() -> None:
    indices = finite_horizon_gittins_indices(12)
    for wins in range(12):
        for losses in range(12 - wins):
            assert indices[1, wins, losses] == pytest.approx((1 + wins) / (2 + wins + losses))


@pytest.mark.parametrize("wins, losses, left", [(0, 0, 10), (2, 5, 20), (6, 0, 4), (1, 1, 28)])
def test_indices_solve_the_one_armed_problem_that_defines_them(wins, losses, left) -> None:
    indices = finite_horizon_gittins_indices(30)
    assert indices[left, wins, losses] == pytest.approx(one_armed_index(wins, losses, left),
                                                        abs=1e-4)


def test_more_pulls_left_is_worth_more_exploration_and_unreachable_states_are_nan() -> None:
    indices = finite_horizon_gittins_indices(30)
    fresh = indices[1:, 0, 0]
    assert np.all(np.diff(fresh) > 0)  # an untried arm is worth more the more pulls remain
    assert fresh[0] == pytest.approx(0.5) and fresh[-1] > 0.75
    assert np.isnan(indices[30, 1, 0])  # one pull made, yet all 30 left: cannot happen


@pytest.mark.parametrize("arms, pulls", [(2, 8), (4, 5), (5, 10), (3, 12)])
def test_its_play_is_within_a_tenth_of_a_percent_of_bayes_optimal(arms: int, pulls: int) -> None:
    # Short trials: the index policy is exactly optimal on the first three (to rounding) and
    # 0.0011 below it on 3 arms × 12 pulls; no policy may beat the optimum.
    optimal = bayes_optimal_trial_value(arms, pulls)
    gittins = gittins_policy_value(arms, pulls)
    assert gittins <= optimal + 1e-9
    assert gittins > 0.999 * optimal


def test_a_trial_without_pulls_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="pulls >= 1, got 0"):
        finite_horizon_gittins_indices(0)
