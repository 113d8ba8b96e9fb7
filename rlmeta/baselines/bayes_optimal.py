"""Exact Bayes-optimal play of a Bernoulli bandit with a known number of pulls.

The arm means are i.i.d. Uniform[0, 1] = Beta(1, 1), the prior of rlmeta's bandit task family
(Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning", Sec. 4.1).
The posterior of an arm is Beta(1 + wins, 1 + losses), so the state of knowledge is each arm's
(wins, losses), and Bellman's equation over these states (Bellman 1956, "A problem in the
sequential design of experiments") gives the highest expected trial reward any policy can get.
Arms are exchangeable, so a state is the sorted tuple of the pulled arms' (wins, losses) plus the
number of arms not yet pulled; that keeps a 10-pull trial to a few thousand states whatever the
number of arms. A 100-pull trial would need far more memory, hence `BAYES_OPTIMAL_MAX_PULLS`.
"""

from __future__ import annotations

import functools

ArmState = tuple[int, int]
"""An arm's posterior state, (wins, losses); (0, 0) for an arm not yet pulled."""
BAYES_OPTIMAL_MAX_PULLS = 20
"""Longest trial solved exactly."""


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
    """Expected reward of `left` Bayes-optimal pulls from a state of knowledge: the sorted
    posterior states of the pulled arms and the number of arms not yet pulled."""
    if left == 0:
        return 0.0
    candidates = set(pulled) | ({(0, 0)} if unpulled else set())
    return max(bayes_arm_value(pulled, unpulled, left, arm) for arm in candidates)


def bayes_optimal_trial_value(arms: int, pulls: int) -> float:
    """The highest expected total reward any policy can get in a `pulls`-long trial with `arms`
    arms under the Beta(1, 1) prior: the ceiling for every bandit baseline and RL²."""
    check_solvable(pulls)
    return bayes_value((), arms, pulls)


def check_solvable(pulls: int) -> None:
    """Raise ValueError unless a `pulls`-long trial is within exact reach."""
    if not 1 <= pulls <= BAYES_OPTIMAL_MAX_PULLS:
        raise ValueError(
            f"exact Bayes-optimal play is solved for 1..{BAYES_OPTIMAL_MAX_PULLS} pulls, "
            f"got {pulls}"
        )
