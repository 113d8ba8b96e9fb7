"""MAMLAlgorithm behind the Algorithm contract: worker determinism, learner/worker agreement,
weights and checkpoints, the PPO and Reptile outer loops, and error reporting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig
from rlmeta.maml import MAMLAlgorithm
from rlmeta.maml.local import run_local, sample_meta_batch
from rlmeta.tasks import make_task_env, sample_tasks, set_task


def _envs(n=3, horizon=15):
    return [make_task_env("rlmeta/Navigation2D-v0", horizon=horizon) for _ in range(n)]


def _config(**maml) -> ExperimentConfig:
    config = ExperimentConfig()
    config.policy.hidden_sizes = [16]
    config.maml.episodes_per_task = 3
    for key, value in maml.items():
        setattr(config.maml, key, value)
    return config


def _make(envs, **maml):
    return MAMLAlgorithm(_config(**maml), envs[0].observation_space, envs[0].action_space)


def _specs(envs, n=2, seed=0):
    tasks = sample_tasks(envs[0], n, np.random.default_rng(seed))
    return [TaskSpec(i, task, 1000 * seed + i) for i, task in enumerate(tasks)]


def _run(algorithm, envs, spec):
    for env in envs:
        set_task(env, spec.task)
    return algorithm.run_task(envs, spec, weights_version=4)


def test_run_task_shape_and_determinism():
    envs = _envs()
    algorithm = _make(envs, inner_steps=2)
    spec = _specs(envs)[0]
    result = _run(algorithm, envs, spec)
    again = _run(_make(envs, inner_steps=2), envs, spec)
    other = _run(algorithm, envs, TaskSpec(0, spec.task, spec.seed + 1))
    assert len(result.rollouts) == 3
    assert set(result.metrics) == {"return/step_0", "return/step_1", "return/step_2"}
    assert result.env_steps == sum(r.num_steps for r in result.rollouts)
    assert all(r.weights_version == 4 and r.task == spec.task for r in result.rollouts)
    for a, b in zip(result.rollouts, again.rollouts, strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(result.rollouts[0].actions, other.rollouts[0].actions)
    # Each stage samples with its own env seed.
    assert len({r.seed for r in result.rollouts}) == 3


def test_learner_reproduces_the_workers_adapted_policy():
    envs = _envs()
    for learned in (False, True):
        algorithm = _make(envs, inner_steps=2, learn_inner_lr=learned)
        results = sample_meta_batch(algorithm, envs, _specs(envs))
        out = algorithm._objective(algorithm._task_batches(results), first_order=False)
        for result, adapted in zip(results, out.adapted, strict=True):
            post = result.rollouts[-1]
            obs = torch.as_tensor(post.observations)
            with torch.no_grad():
                log_probs = algorithm.policy.distribution(obs, adapted).log_prob(
                    torch.as_tensor(post.actions)
                )
            real = post.mask > 0
            # The worker stored log π_θ'(a|s) while sampling; the learner rebuilt θ' from episodes.
            np.testing.assert_allclose(log_probs.numpy()[real], post.log_probs[real], atol=2e-4)
        # A real adaptation happened: θ' differs from θ.
        theta = dict(algorithm.policy.named_parameters())
        assert any((adapted[k] - theta[k]).abs().max() > 1e-4 for k in theta)


def test_weights_roundtrip_and_bad_weights_are_rejected():
    envs = _envs()
    algorithm = _make(envs, learn_inner_lr=True)
    weights = algorithm.get_weights()
    assert any(k.startswith("inner_lr/") for k in weights)
    assert all(v.device.type == "cpu" for v in weights.values())
    other = _make(envs, learn_inner_lr=True)
    shifted = {k: v + 0.5 for k, v in weights.items()}
    other.set_weights(shifted)
    for key, value in other.get_weights().items():
        torch.testing.assert_close(value, shifted[key])
    with pytest.raises(KeyError, match="missing"):
        other.set_weights({k: v for k, v in weights.items() if not k.startswith("inner_lr/")})
    bad = dict(weights)
    key = next(iter(bad))
    bad[key] = torch.full_like(bad[key], float("nan"))
    with pytest.raises(FloatingPointError, match=key):
        other.set_weights(bad)
    torch.testing.assert_close(other.get_weights()[key], shifted[key])


def test_ppo_state_dict_loads_with_weights_only_and_resumes_identically(tmp_path):
    envs = _envs()
    algorithm = _make(envs, outer="ppo", outer_lr=3e-3, ppo_epochs=2)
    results = sample_meta_batch(algorithm, envs, _specs(envs))
    metrics = algorithm.update(results)
    assert {"loss/surrogate", "kl", "ppo/improvement", "entropy"} <= set(metrics)
    path = tmp_path / "state.pt"
    torch.save(algorithm.state_dict(), path)
    resumed = _make(envs, outer="ppo", outer_lr=3e-3, ppo_epochs=2)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.updates == 1
    next_results = sample_meta_batch(algorithm, envs, _specs(envs, seed=1))
    algorithm.update(next_results)
    resumed.update(next_results)
    for key, value in algorithm.get_weights().items():
        torch.testing.assert_close(resumed.get_weights()[key], value)


def test_reptile_moves_towards_adapted_parameters():
    envs = _envs()
    algorithm = _make(envs, outer="reptile", outer_lr=0.5)
    results = sample_meta_batch(algorithm, envs, _specs(envs))
    adapted = algorithm._objective(algorithm._task_batches(results), first_order=True).adapted
    before = algorithm.get_weights()
    metrics = algorithm.update(results)
    assert metrics["reptile/step_norm"] > 0
    after = algorithm.get_weights()
    for name in adapted[0]:
        target = torch.stack([a[name].detach() for a in adapted]).mean(0)
        theta = before["policy/" + name]
        # θ ← θ + ε (mean θ' − θ) with ε = 0.5: halfway to the mean adapted parameters.
        torch.testing.assert_close(after["policy/" + name], theta + 0.5 * (target - theta))


def test_run_local_reports_all_trpo_metrics():
    envs = _envs()
    algorithm = _make(envs, estimator="dice")
    metrics = run_local(algorithm, envs, _specs(envs))
    expected = {"loss/surrogate", "kl", "trpo/accepted", "trpo/rejected", "return/step_0",
                "return/step_1", "entropy"}
    assert expected <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert algorithm.updates == 1


class _SuccessNavigation(gym.Wrapper):
    """Reports success when a step ends within 0.3 of the goal."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "success": float(reward > -0.3)}


def test_evaluate_task_reports_returns_and_successes_per_step():
    envs = [_SuccessNavigation(env) for env in _envs()]
    algorithm = _make(envs, eval_inner_lrs=[0.1, 0.05])
    spec = _specs(envs)[0]
    for env in envs:
        set_task(env, spec.task)
    metrics = algorithm.evaluate_task(envs, spec, adapt_steps=3)
    assert set(metrics) == {f"{kind}/step_{k}" for kind in ("return", "success") for k in range(4)}
    assert all(0.0 <= metrics[f"success/step_{k}"] <= 1.0 for k in range(4))
    assert metrics["return/step_0"] != metrics["return/step_3"]


def test_update_reports_meta_train_success_per_step_where_the_env_reports_it():
    envs = [_SuccessNavigation(env) for env in _envs()]
    algorithm = _make(envs)
    results = sample_meta_batch(algorithm, envs, _specs(envs))
    expected = np.mean([r.rollouts[1].successes.max(axis=1).mean() for r in results])
    metrics = algorithm.update(results)
    assert {"success/step_0", "success/step_1"} <= set(metrics)
    assert metrics["success/step_1"] == pytest.approx(expected)
    plain = _make(_envs())
    assert not any(key.startswith("success/") for key in plain.update(
        sample_meta_batch(plain, _envs(), _specs(_envs()))))


def test_non_finite_loss_in_update_raises_and_leaves_weights():
    envs = _envs()
    for estimator in ("maml", "dice"):
        algorithm = _make(envs, estimator=estimator)
        results = sample_meta_batch(algorithm, envs, _specs(envs))
        results[1].rollouts[0].log_probs[0, 0] = np.nan
        before = algorithm.get_weights()
        with pytest.raises(FloatingPointError, match="inner-loop loss on task 1"):
            algorithm.update(results)
        for key, value in algorithm.get_weights().items():
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    results[0].rollouts[1].rewards[0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="non-finite rewards"):
        algorithm.update(results)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"estimator": "loaded"}, "'maml.estimator' must be one of maml, dice, got 'loaded'"),
        ({"outer": "sgd"}, "'maml.outer' must be one of trpo, ppo, reptile, got 'sgd'"),
        ({"inner_steps": -1}, "'maml.inner_steps' must be >= 0 and <= 100, got -1"),
        ({"inner_steps": 0, "outer": "reptile"}, "maml.inner_steps 0"),
        ({"outer": "reptile", "learn_inner_lr": True}, "learn_inner_lr"),
    ],
)
def test_bad_config_is_a_clear_error(settings, message):
    # The config schema refuses them, so no algorithm is ever built from them.
    envs = _envs(1)
    with pytest.raises(ValueError, match=message):
        _make(envs, **settings)


def test_update_checks_number_of_rollouts():
    envs = _envs()
    algorithm = _make(envs)
    results = sample_meta_batch(algorithm, envs, _specs(envs))
    results[0].rollouts.pop()
    with pytest.raises(ValueError, match="expected inner_steps \\+ 1 = 2"):
        algorithm.update(results)
