"""Argmax with ties broken at random, shared by the bandit and tabular-MDP baselines."""

from __future__ import annotations

import numpy as np


def argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest value; among equal largest ones, one drawn uniformly from `rng`
    (which is drawn from only when there is a tie)."""
    best = np.flatnonzero(values == values.max())
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
