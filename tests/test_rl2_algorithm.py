"""RL2Algorithm: the Algorithm contract, trial bookkeeping, the PPO loss and checkpoints."""

from __future__ import annotations

import io
import math
import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.returns import gae
from rlmeta.rl2 import RL2Algorithm, ppo_loss
from rlmeta.rl2.config import RL2Config
from rlmeta.rl2.trials import previous_inputs, trial_end_dones
from rlmeta.tasks import make_task_env, sample_tasks


def small_config(env: str = "rlmeta/Bandit-v0", env_kwargs: dict | None = None, **rl2) -> Any:
    settings = {"trials_per_task": 4, "episodes_per_trial": 3, "hidden_size": 8, **rl2}
    return ExperimentConfig(
        algorithm="rl2",
        env=env,
        env_kwargs={"arms": 3} if env_kwargs is None else env_kwargs,
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(**settings),
    )


def build(config: ExperimentConfig, n_envs: int = 2, seed: int = 0):
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(n_envs)]
    torch.manual_seed(seed)
    return RL2Algorithm(config, envs[0].observation_space, envs[0].action_space), envs


def meta_batch(algorithm, envs, n_tasks=3, seed=0, version=0):
    tasks = sample_tasks(envs[0], n_tasks, np.random.default_rng(seed))
    return [
        algorithm.run_task(envs, TaskSpec(i, task, seed=1000 * seed + i), version)
        for i, task in enumerate(tasks)
    ]


def test_run_task_reports_trial_and_per_episode_returns():
    algorithm, envs = build(small_config())
    result = meta_batch(algorithm, envs, n_tasks=1)[0]
    rollout = result.rollouts[0]
    assert rollout.num_sequences == 4 and result.env_steps == 4 * 3
    episode_returns = rollout.episode_returns()
    assert episode_returns.shape == (4, 3)
    metrics = result.metrics
    assert sorted(metrics) == ["return/episode_0", "return/episode_1", "return/episode_2",
                               "return/trial"]
    assert metrics["return/trial"] == pytest.approx(episode_returns.sum(axis=1).mean())
    assert metrics["return/trial"] == pytest.approx(sum(metrics[f"return/episode_{i}"]
                                                        for i in range(3)))
    assert rollout.extras["initial_state"].shape == (4, 8)


def test_trial_dones_mark_only_the_end_of_each_trial():
    mask = np.array([[1, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    expected = np.array([[0, 0], [0, 1], [1, 0], [0, 0]], dtype=bool)
    np.testing.assert_array_equal(trial_end_dones(mask), expected)


def test_previous_inputs_are_the_last_step_of_the_same_trial_and_zero_at_its_start():
    actions = np.array([[2, 1], [0, 3], [4, 4]])
    rewards = np.array([[1.0, 0.5], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    dones = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    prev_a, prev_r, prev_d = previous_inputs(actions, rewards, dones)
    np.testing.assert_array_equal(prev_a, [[0, 0], [2, 1], [0, 3]])
    np.testing.assert_array_equal(prev_r, [[0, 0], [1.0, 0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(prev_d, [[0, 0], [1, 0], [0, 1]])


def test_advantages_flow_across_episode_boundaries_inside_a_trial():
    # Three one-step episodes (a bandit trial): only the last step is a trial end, so a reward
    # in episode 2 reaches the advantage of episode 0.
    rewards = torch.tensor([[0.0], [0.0], [1.0]])
    mask = torch.ones(3, 1)
    dones = torch.as_tensor(trial_end_dones(mask.numpy()))
    advantages = gae(rewards, torch.zeros(3, 1), dones, mask, gamma=0.5, lam=1.0)
    torch.testing.assert_close(advantages[:, 0], torch.tensor([0.25, 0.5, 1.0]))


def test_update_changes_the_weights_and_reports_finite_metrics():
    algorithm, envs = build(small_config(epochs=2, minibatches=2))
    before = algorithm.get_weights()
    results = meta_batch(algorithm, envs)
    metrics = algorithm.update(results)
    for key in ("loss/policy", "loss/value", "entropy", "approx_kl", "clip_fraction",
                "grad_norm", "return/trial", "return/episode_0", "return/episode_2"):
        assert math.isfinite(metrics[key]), key
    assert metrics["entropy"] > 0
    # Env steps are counted by the driver from the results, cumulatively; not per update here.
    assert "env_steps" not in metrics
    assert sum(r.env_steps for r in results) == 3 * 4 * 3
    expected_trial = np.mean([r.rollouts[0].episode_returns().sum(axis=1) for r in results])
    assert metrics["return/trial"] == pytest.approx(expected_trial)
    after = algorithm.get_weights()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cell", ["gru", "layer_norm_gru"])
def test_weight_decay_shrinks_the_weight_matrices_only(cell):
    # AdamW's decoupled decay: one optimizer step moves each matrix by Adam's step plus
    # -lr * weight_decay * (its value before), and leaves biases and layer-norm gains to Adam.
    lr, weight_decay = 0.01, 0.5
    config = small_config(epochs=1, minibatches=1, lr=lr, recurrent_cell=cell)
    plain, envs = build(config)
    decayed, _ = build(small_config(epochs=1, minibatches=1, lr=lr, recurrent_cell=cell,
                                    weight_decay=weight_decay))
    start = plain.get_weights()
    assert all(torch.equal(start[k], v) for k, v in decayed.get_weights().items())
    results = meta_batch(plain, envs)
    plain.update(results)
    decayed.update(results)
    after_plain, after_decayed = plain.get_weights(), decayed.get_weights()
    matrices = [k for k in start if start[k].ndim > 1]
    assert matrices and len(matrices) < len(start)
    for key in start:
        shrink = lr * weight_decay * start[key] if start[key].ndim > 1 else 0.0
        torch.testing.assert_close(after_decayed[key], after_plain[key] - shrink,
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_learning_rate_follows_the_schedule_over_the_runs_iterations(schedule):
    config = small_config(lr=1e-3, lr_schedule=schedule, epochs=1, minibatches=1)
    config.iterations = 4
    algorithm, envs = build(config)
    used, saved = [], io.BytesIO()
    for i in range(5):
        if i == 2:
            torch.save(algorithm.state_dict(), saved)
        used.append(algorithm.update(meta_batch(algorithm, envs, seed=i))["lr"])
    # Past its planned iterations a linear schedule stays at 0 rather than turning negative.
    expected = [1e-3] * 5 if schedule == "constant" else [1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0]
    assert used == pytest.approx(expected)
    assert algorithm.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1])
    # A run resumed from a checkpoint continues the schedule where it stopped.
    resumed, _ = build(config)
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    assert resumed.update(meta_batch(resumed, envs, seed=2))["lr"] == pytest.approx(expected[2])


def test_first_minibatch_step_has_ratio_one_so_nothing_is_clipped():
    # On-policy data: the first gradient step sees the same policy that sampled.
    algorithm, envs = build(small_config("rlmeta/TabularMDP-v0", {}, epochs=1, minibatches=1))
    metrics = algorithm.update(meta_batch(algorithm, envs, n_tasks=2))
    assert metrics["clip_fraction"] == 0.0
    assert abs(metrics["approx_kl"]) < 1e-6


def test_ppo_loss_matches_the_clipped_surrogate_by_hand():
    logits = torch.zeros(1, 2, 2, requires_grad=True)  # π(a) = 0.5 for both columns
    distribution = Categorical(logits=logits)
    actions = torch.tensor([[0, 1]])
    old_log_probs = torch.log(torch.tensor([[0.25, 0.25]]))  # ratio 2 for both
    advantages = torch.tensor([[1.0, -1.0]])
    returns = torch.tensor([[1.0, 0.0]])
    values = torch.tensor([[0.0, 0.0]])
    loss = ppo_loss(distribution, values, actions, old_log_probs, advantages, returns,
                    torch.ones(1, 2), clip=0.2, value_coef=0.5, entropy_coef=0.1)
    # min(2·1, 1.2·1) = 1.2 and min(2·(-1), 1.2·(-1)) = -2  ->  surrogate mean -0.4.
    assert float(loss.policy) == pytest.approx(0.4)
    assert float(loss.value) == pytest.approx(0.5 * 0.5)
    assert float(loss.entropy) == pytest.approx(math.log(2))
    assert float(loss.total.detach()) == pytest.approx(0.4 + 0.5 * 0.25 - 0.1 * math.log(2))
    assert float(loss.clip_fraction) == 1.0
    loss.total.backward()
    # The clipped column (positive advantage, ratio above 1 + ε) gives no policy gradient: only
    # the entropy term moves its logits, and at uniform logits its gradient is zero.
    assert torch.allclose(logits.grad[0, 0], torch.zeros(2), atol=1e-7)
    assert logits.grad[0, 1].abs().sum() > 0


def test_state_dict_round_trips_through_torch_load_weights_only():
    config = small_config(epochs=1, minibatches=2)
    algorithm, envs = build(config)
    algorithm.update(meta_batch(algorithm, envs, seed=1))
    buffer = io.BytesIO()
    torch.save(algorithm.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    restored, _ = build(config, seed=123)  # different initial weights
    restored.load_state_dict(state)
    for key, value in algorithm.get_weights().items():
        assert torch.equal(value, restored.get_weights()[key])
    assert restored.updates == algorithm.updates == 1
    # Resume continues exactly: Adam moments and the minibatch shuffle come back too.
    batch = meta_batch(algorithm, envs, seed=2, version=1)
    algorithm.update(batch)
    restored.update(batch)
    for key, value in algorithm.get_weights().items():
        assert torch.equal(value, restored.get_weights()[key]), key


def test_weights_are_cpu_copies_and_mismatched_weights_are_rejected():
    algorithm, _ = build(small_config())
    weights = algorithm.get_weights()
    assert all(t.device.type == "cpu" for t in weights.values())
    key = next(iter(weights))
    weights[key].add_(1.0)
    assert not torch.equal(weights[key], algorithm.get_weights()[key])
    algorithm.set_weights(weights)
    assert torch.equal(weights[key], algorithm.get_weights()[key])
    del weights[key]
    with pytest.raises(ValueError, match=f"missing \\['{key}'\\]"):
        algorithm.set_weights(weights)
    weights = algorithm.get_weights()
    weights[key] = torch.zeros(*weights[key].shape, 2)
    with pytest.raises(ValueError, match=f"shapes: {re.escape(key)} "):
        algorithm.set_weights(weights)


@pytest.mark.parametrize(
    ("field", "value"),
    [("trials_per_task", 0), ("gamma", 1.5), ("clip", 0.0), ("lr_schedule", "cosine"),
     ("trial_progress_input", "yes"), ("eval_actions", "greedy"), ("recurrent_cell", "lstm"),
     ("weight_decay", -0.01)],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"rl2.{field}"):
        build(small_config(**{field: value}))


def test_update_without_results_is_an_error():
    algorithm, _ = build(small_config())
    with pytest.raises(ValueError, match="at least one task result"):
        algorithm.update([])


class GuessEnv(gym.Env):
    """One-step episodes; success when the action is the task's hidden target."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def __init__(self) -> None:
        self.target = 0

    def sample_tasks(self, n, rng):
        return [{"target": int(t)} for t in rng.integers(0, 3, n)]

    def set_task(self, task):
        self.target = task["target"]

    def get_task(self):
        return {"target": self.target}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        hit = int(action) == self.target
        return np.ones(1, np.float32), float(hit), True, False, {"success": hit}


def test_evaluate_task_reports_returns_and_successes_per_episode():
    config = small_config(f"{__name__}:GuessEnv", {}, trials_per_task=6, episodes_per_trial=4)
    algorithm, envs = build(config)
    metrics = algorithm.evaluate_task(envs, TaskSpec(0, {"target": 1}, seed=3), adapt_steps=7)
    assert sorted(k for k in metrics if k.startswith("return/episode")) == [
        f"return/episode_{i}" for i in range(4)
    ]
    for i in range(4):
        # Reward is 1 exactly on success, so the two per-episode means agree.
        assert metrics[f"success/episode_{i}"] == pytest.approx(metrics[f"return/episode_{i}"])
    assert metrics["return/trial"] == pytest.approx(sum(metrics[f"success/episode_{i}"]
                                                        for i in range(4)))
    assert metrics == algorithm.evaluate_task(envs, TaskSpec(0, {"target": 1}, seed=3), 0)


def test_evaluate_task_acts_on_the_mode_when_eval_actions_says_so():
    def trial_returns(eval_actions: str) -> list[float]:
        config = small_config(f"{__name__}:GuessEnv", {}, trials_per_task=6,
                              episodes_per_trial=4, eval_actions=eval_actions)
        algorithm, envs = build(config)  # the same initial weights for both modes
        return [algorithm.evaluate_task(envs, TaskSpec(0, {"target": t}, seed=s), 0)
                ["return/trial"] for t in range(3) for s in (3, 4)]

    mode = trial_returns("mode")
    # GuessEnv is deterministic, so acting on the mode repeats one trial exactly: the mean over
    # six trials is a whole number of hits, and the reset seed changes nothing.
    assert all(float(value).is_integer() for value in mode)
    assert mode[0::2] == mode[1::2]
    assert trial_returns("sample") != mode
