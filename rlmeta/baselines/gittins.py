"""The finite-horizon Gittins index of a Bernoulli arm with a Beta(1, 1) prior.

Gittins and Jones 1974, "A dynamic allocation index for the sequential design of experiments";
for a finite horizon, Niño-Mora 2011, "Computing a classic index for finite-horizon bandits"
(INFORMS J. on Computing 23(2)). The index of an arm in posterior state (wins, losses) with m
pulls left is the reward rate λ of a known arm at which a player with only these two arms and m
pulls is indifferent between pulling the unknown arm now and taking λ for all m pulls. Pulling
the highest index is not exactly Bayes-optimal across several arms (3 arms × 12 pulls: 7.8013
against 7.8025), but it is the standard near-optimal policy, and it is solvable for 100 pulls
where exact play (`rlmeta.baselines.bayes_optimal`) is not.
"""

from __future__ import annotations

import functools

import numpy as np

GITTINS_GRID = 1001
"""λ values on [0, 1]; each index is refined by linear interpolation between two of them."""


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
