"""RL² `reward_scale`: it scales the rewards that value targets and advantages are built from,
and nothing else (the policy still reads raw previous rewards)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlmeta.rl2.algorithm as rl2_algorithm
from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.rl2 import RL2Algorithm, collate_trials
from rlmeta.rl2.config import RL2Config
from rlmeta.tasks import make_task_env, sample_tasks


def build(reward_scale: float) -> tuple[RL2Algorithm, list]:
    config = ExperimentConfig(
        algorithm="rl2",
        env="rlmeta/TabularMDP-v0",
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(trials_per_task=2, episodes_per_trial=2, hidden_size=8, epochs=1,
                      minibatches=1, reward_scale=reward_scale),
    )
    envs = [make_task_env(config.env) for _ in range(2)]
    torch.manual_seed(0)
    return RL2Algorithm(config, envs[0].observation_space, envs[0].action_space), envs


def test_value_targets_use_scaled_rewards_and_policy_inputs_stay_raw(monkeypatch):
    algorithm, envs = build(reward_scale=0.1)
    task = sample_tasks(envs[0], 1, np.random.default_rng(0))[0]
    results = [algorithm.run_task(envs, TaskSpec(0, task, seed=3), 0)]
    batch = collate_trials(results)
    seen = {}
    real_gae = rl2_algorithm.gae

    def spy(rewards, *args, **kwargs):
        seen["rewards"] = rewards.clone()
        return real_gae(rewards, *args, **kwargs)

    inputs = []
    real_forward = algorithm.policy.forward

    def forward_spy(observations, prev_actions, prev_rewards, prev_dones, state):
        inputs.append(prev_rewards.clone())
        return real_forward(observations, prev_actions, prev_rewards, prev_dones, state)

    monkeypatch.setattr(rl2_algorithm, "gae", spy)
    monkeypatch.setattr(algorithm.policy, "forward", forward_spy)
    algorithm.update(results)
    assert batch.rewards.abs().sum() > 0
    torch.testing.assert_close(seen["rewards"], batch.rewards * 0.1)
    torch.testing.assert_close(inputs[0], batch.prev_rewards)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_reward_scale_is_rejected_by_name(value):
    with pytest.raises(ValueError, match="'rl2.reward_scale' must be > 0"):
        build(reward_scale=value)
