"""Returns, GAE and the linear feature baseline against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlmeta.returns import LinearFeatureBaseline, discounted_returns, gae


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# Column 0: episode ends at t=1, a new one starts at t=2. Column 1: ends at t=1, then padding
# (its reward 5 must be ignored).
REWARDS = t([[1.0, 1.0], [2.0, 0.0], [3.0, 5.0]])
DONES = t([[0, 0], [1, 1], [0, 0]], torch.bool)
MASK = t([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])


def test_discounted_returns_restart_after_done_and_ignore_padding():
    returns = discounted_returns(REWARDS, DONES, MASK, gamma=0.5)
    # col 0: R2 = 3, R1 = 2 (done), R0 = 1 + 0.5*2; col 1: R1 = 0, R0 = 1 + 0.5*0, padded 0.
    np.testing.assert_allclose(returns.numpy(), [[2.0, 1.0], [2.0, 0.0], [3.0, 0.0]])


def test_gae_hand_computed_with_bootstrap_done_and_padding():
    rewards = t([[1.0, 1.0], [2.0, 1.0], [3.0, 9.0]])
    values = t([[0.5, 1.0], [1.0, 2.0], [2.0, 7.0]])
    dones = t([[0, 0], [1, 0], [0, 0]], torch.bool)
    mask = t([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    adv = gae(rewards, values, dones, mask, gamma=0.5, lam=0.5, last_values=t([4.0, 100.0]))
    # col 0: d2 = 3 + .5*4 - 2 = 3; d1 = 2 - 1 = 1 (done: no bootstrap); d0 = 1 + .5*1 - .5 = 1,
    #        A0 = 1 + .25*1. col 1: step 2 padded; d1 = 1 - 2 (padding follows) ; A0 = 1 + .25*-1.
    np.testing.assert_allclose(adv.numpy(), [[1.25, 0.75], [1.0, -1.0], [3.0, 0.0]])
    no_last = gae(rewards, values, dones, mask, gamma=0.5, lam=0.5)
    assert no_last[2, 0].item() == pytest.approx(1.0)  # 3 - 2, bootstraps from 0


def test_gae_with_lambda_one_is_returns_minus_values():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    dones = torch.zeros(7, 3, dtype=torch.bool)
    dones[2, 0] = dones[6] = True
    mask = torch.ones(7, 3, dtype=torch.float64)
    adv = gae(rewards, values, dones, mask, gamma=0.9, lam=1.0)
    expected = discounted_returns(rewards, dones, mask, 0.9) - values
    torch.testing.assert_close(adv, expected)


def test_shape_mismatch_names_the_argument():
    with pytest.raises(ValueError, match="dones has shape"):
        discounted_returns(REWARDS, DONES[:2], MASK, 0.9)
    with pytest.raises(ValueError, match="last_values"):
        gae(REWARDS, REWARDS, DONES, MASK, 0.9, 0.9, last_values=t([1.0]))


def test_baseline_features_hand_computed():
    features = LinearFeatureBaseline.features(t([[[0.5, -20.0]]]), torch.tensor([[50]]))
    # obs clipped to ±10, t = 50/100.
    expected = [0.5, -10.0, 0.25, 100.0, 0.5, 0.25, 0.125, 1.0]
    np.testing.assert_allclose(features[0, 0].numpy(), expected)


def test_baseline_fit_matches_ridge_solution_and_ignores_padding():
    generator = torch.Generator().manual_seed(1)
    obs = torch.randn(6, 4, 2, generator=generator, dtype=torch.float64)
    steps = torch.arange(6)[:, None].expand(6, 4)
    returns = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    mask = torch.ones(6, 4, dtype=torch.float64)
    mask[4:, 1] = 0.0
    returns_padded = returns.clone()
    returns_padded[4:, 1] = 1e6  # garbage on padding must not matter
    baseline = LinearFeatureBaseline(reg_coeff=1e-5)
    baseline.fit(obs, returns_padded, mask, steps)
    feats = LinearFeatureBaseline.features(obs, steps).numpy()[mask.numpy() > 0]
    target = returns.numpy()[mask.numpy() > 0]
    coef = np.linalg.solve(feats.T @ feats + 1e-5 * np.eye(feats.shape[1]), feats.T @ target)
    np.testing.assert_allclose(baseline.coefficients.numpy(), coef, rtol=1e-6, atol=1e-8)
    prediction = baseline.predict(obs, mask, steps)
    assert prediction[4:, 1].abs().max() == 0.0


def test_baseline_reproduces_returns_linear_in_features():
    obs = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(10, 2, 1)
    steps = torch.arange(10)[:, None].expand(10, 2)
    returns = 2.0 * obs[..., 0] - 3.0 * steps / 100.0 + 0.5
    mask = torch.ones(10, 2)
    baseline = LinearFeatureBaseline()
    baseline.fit(obs, returns, mask, steps)
    torch.testing.assert_close(baseline.predict(obs, mask, steps), returns, atol=1e-3, rtol=0)


def test_baseline_regularisation_grows_when_singular():
    # Constant obs duplicates the constant feature and t = 0 zeroes the time features, so the
    # normal equations are singular; a ridge of 1e-16 is lost in rounding next to 50.
    obs = torch.ones(50, 2, 1, dtype=torch.float64)
    steps = torch.zeros(50, 2, dtype=torch.int64)
    returns = torch.randn(50, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    baseline = LinearFeatureBaseline(reg_coeff=1e-16)
    baseline.fit(obs, returns, torch.ones(50, 2), steps)
    assert baseline.reg_used > 1e-16
    assert torch.isfinite(baseline.predict(obs, torch.ones(50, 2), steps)).all()
    with pytest.raises(FloatingPointError, match="ill-conditioned"):
        hopeless = LinearFeatureBaseline(reg_coeff=1e-30, max_tries=3)
        hopeless.fit(obs, returns, torch.ones(50, 2), steps)


def test_baseline_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="before fit"):
        LinearFeatureBaseline().predict(torch.zeros(1, 1, 1), torch.ones(1, 1), torch.zeros(1, 1))
