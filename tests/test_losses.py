"""Masked mean, advantage normalisation and PPO's clipped surrogate against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rlmeta.losses import clipped_surrogate, masked_log_ratio, masked_mean, normalize_advantages


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_masked_mean_ignores_padding():
    values = t([[1.0, 2.0], [3.0, 100.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    # (1 + 2 + 3) / 3; the padded 100 counts neither in the sum nor in the count.
    assert float(masked_mean(values, mask)) == 2.0
    assert float(masked_mean(values, mask, zero_if_empty=True)) == 2.0


def test_masked_mean_of_all_padding_is_nan_or_zero_if_asked():
    values = t([[1.0, 2.0]])
    mask = t([[0.0, 0.0]])
    assert math.isnan(float(masked_mean(values, mask)))
    assert float(masked_mean(values, mask, zero_if_empty=True)) == 0.0


def test_normalize_advantages_over_real_steps_with_population_std():
    # Real steps 1, 3, 5 (column 0) and 3 (column 1); the padded 7 and 9 take no part.
    advantages = t([[1.0, 3.0], [3.0, 9.0], [5.0, 9.0], [7.0, 9.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    # mean 3; variance (4 + 0 + 4 + 0) / 4 = 2, divided by the 4 real steps, not 3 (no Bessel).
    std = math.sqrt(2.0) + 1e-8
    expected = [[-2.0 / std, 0.0], [0.0, 0.0], [2.0 / std, 0.0], [0.0, 0.0]]
    for zero_if_empty in (False, True):
        result = normalize_advantages(advantages, mask, zero_if_empty)
        torch.testing.assert_close(result, t(expected), rtol=0.0, atol=1e-15)
        real = result[mask > 0]
        assert float(real.mean()) == pytest.approx(0.0, abs=1e-12)
        assert float(real.std(unbiased=False)) == pytest.approx(1.0, abs=1e-7)


def test_normalize_advantages_of_constant_advantages_is_zero_not_nan():
    result = normalize_advantages(t([[2.0], [2.0], [0.0]]), t([[1.0], [1.0], [0.0]]))
    assert torch.equal(result, t([[0.0], [0.0], [0.0]]))


def test_masked_log_ratio_is_zero_on_padding_whatever_was_stored_there():
    log_probs = t([[-1.0, -2.0], [-0.5, -3.0]]).requires_grad_(True)
    behaviour = t([[-1.5, -2.0], [-0.25, math.nan]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    result = masked_log_ratio(log_probs, behaviour, mask)
    assert torch.equal(result, t([[0.5, 0.0], [-0.25, 0.0]]))
    result.sum().backward()
    assert torch.equal(log_probs.grad, mask)


# (ratio, advantage, objective, d objective / d ratio) with clip ε = 0.2.
SURROGATE_CASES = [
    (1.0, 2.0, 2.0, 2.0),  # on-policy: the plain policy-gradient objective
    (1.1, 1.0, 1.1, 1.0),  # inside [0.8, 1.2]: unclipped whatever the sign of A
    (0.9, -2.0, -1.8, -2.0),
    (1.5, 1.0, 1.2, 0.0),  # A > 0 and r > 1 + ε: clipped, no gradient
    (0.5, -1.0, -0.8, 0.0),  # A < 0 and r < 1 − ε: clipped, no gradient
    (0.5, 1.0, 0.5, 1.0),  # A > 0 and r < 1 − ε: the unclipped term is smaller, kept
    (1.5, -1.0, -1.5, -1.0),  # A < 0 and r > 1 + ε: the unclipped term is smaller, kept
]


@pytest.mark.parametrize(("ratio", "advantage", "objective", "gradient"), SURROGATE_CASES)
def test_clipped_surrogate_value_and_gradient_per_step(ratio, advantage, objective, gradient):
    ratios = t([[ratio]]).requires_grad_(True)
    value = clipped_surrogate(ratios, t([[advantage]]), t([[1.0]]), clip=0.2)
    assert float(value.detach()) == pytest.approx(objective)
    value.backward()
    assert float(ratios.grad) == pytest.approx(gradient)


def test_clipped_surrogate_is_a_mean_over_real_steps():
    ratios = t([[1.1, 1.5], [0.5, 3.0]]).requires_grad_(True)
    advantages = t([[1.0, 1.0], [-1.0, 5.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    value = clipped_surrogate(ratios, advantages, mask, clip=0.2)
    # (1.1 + 1.2 − 0.8) / 3; the padded step (r 3, A 5) counts for nothing.
    assert float(value.detach()) == pytest.approx(1.5 / 3)
    value.backward()
    torch.testing.assert_close(ratios.grad, t([[1.0 / 3, 0.0], [0.0, 0.0]]))
    empty = t([[0.0, 0.0], [0.0, 0.0]])
    assert math.isnan(float(clipped_surrogate(ratios.detach(), advantages, empty, clip=0.2)))
    zero = clipped_surrogate(ratios.detach(), advantages, empty, clip=0.2, zero_if_empty=True)
    assert float(zero) == 0.0
