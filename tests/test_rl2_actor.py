"""RL² policy and actor: hidden state across episodes and trials, reproducible sampling, and the
learner's recomputation of stored trials."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.rl2 import RecurrentActor, RecurrentPolicy, RL2Algorithm, collate_trials
from rlmeta.rl2.config import RL2Config
from rlmeta.rollout import sample_rollout
from rlmeta.tasks import make_task_env, sample_tasks


def small_config(env: str, env_kwargs: dict | None = None, **rl2) -> ExperimentConfig:
    settings = {"trials_per_task": 3, "episodes_per_trial": 3, "hidden_size": 8, **rl2}
    return ExperimentConfig(
        algorithm="rl2",
        env=env,
        env_kwargs=env_kwargs or {},
        policy=PolicyConfig(hidden_sizes=[16], activation="tanh"),
        rl2=RL2Config(**settings),
    )


def build(config: ExperimentConfig, n_envs: int = 2) -> tuple[RL2Algorithm, list[gym.Env]]:
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(n_envs)]
    torch.manual_seed(0)
    algorithm = RL2Algorithm(config, envs[0].observation_space, envs[0].action_space)
    return algorithm, envs


def first_task(env: gym.Env, seed: int = 0) -> object:
    return sample_tasks(env, 1, np.random.default_rng(seed))[0]


class RecordingActor(RecurrentActor):
    """Records, before every step, each slot's hidden state and the prev_done flag it receives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[tuple[torch.Tensor, np.ndarray, set[int]]] = []
        self._just_started: set[int] = set()

    def start_sequences(self, slots: np.ndarray) -> None:
        super().start_sequences(slots)
        self._just_started |= {int(s) for s in slots}

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        self.records.append((self.hidden_state, prev_dones.copy(), self._just_started))
        self._just_started = set()
        return super().act(observations, prev_actions, prev_rewards, prev_dones)


def test_hidden_state_carries_across_episodes_and_resets_between_trials():
    config = small_config("rlmeta/Bandit-v0", {"arms": 3})
    algorithm, envs = build(config)
    actor = RecordingActor(algorithm.policy, torch.Generator().manual_seed(1))
    # Two slots, four trials of three one-pull episodes: slots start new trials mid-run.
    sample_rollout(envs, actor, num_sequences=4, episodes_per_sequence=3, seed=5)
    carried = restarted = 0
    for state, prev_dones, started in actor.records:
        for slot in range(2):
            if slot in started:
                assert torch.all(state[slot] == 0), "a new trial must start from the zero state"
                restarted += 1
            elif prev_dones[slot] == 1.0:
                # An episode just ended inside the trial: the state was not reset.
                assert state[slot].abs().sum() > 0
                carried += 1
    assert restarted == 4  # every trial started once from zero
    assert carried == 4 * 2  # two in-trial episode boundaries per trial


def test_trial_progress_counts_the_episodes_done_and_restarts_with_each_trial():
    config = small_config("rlmeta/Bandit-v0", {"arms": 3}, trial_progress_input=True)
    algorithm, envs = build(config)
    assert algorithm.policy.hidden_size == 8 + 1
    actor = RecordingActor(algorithm.policy, torch.Generator().manual_seed(1))
    sample_rollout(envs, actor, num_sequences=4, episodes_per_sequence=3, seed=5)
    seen = {0: 0.0, 1: 0.0}
    counts = []
    for state, prev_dones, started in actor.records:
        for slot in range(2):
            if slot in started:
                seen[slot] = 0.0
            # The state before a step holds the episodes closed by the done flags read so far.
            assert state[slot, -1].item() == seen[slot]
            counts.append(seen[slot])
            seen[slot] += float(prev_dones[slot])
    # Three one-pull episodes per trial: a trial's steps read 0, 0, 1 (the flag read at the
    # third step is counted in that step's input, 2/3, and the next trial starts from 0).
    assert counts.count(1.0) == 4 and max(counts) == 1.0
    with torch.no_grad():
        trial = algorithm.policy(
            torch.zeros(3, 1), torch.zeros(3, 1), torch.ones(3, 1), torch.tensor([[0.0], [1], [1]]),
            algorithm.policy.initial_state(1),
        )
    assert trial[2][0, -1].item() == 2.0
    # The count reaches the action head: the same step later in the trial is played differently.
    later = algorithm.policy.initial_state(1)
    later[0, -1] = 2.0
    with torch.no_grad():
        step = [torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1)]
        early_logits = algorithm.policy(*step, algorithm.policy.initial_state(1))[0].logits
        late_logits = algorithm.policy(*step, later)[0].logits
    assert not torch.allclose(early_logits, late_logits, atol=0, rtol=0)
    with pytest.raises(ValueError, match="trial_episodes"):
        RecurrentPolicy(gym.spaces.Discrete(2), gym.spaces.Discrete(2), [], 4, trial_episodes=0)


def test_start_sequences_resets_only_the_given_slots():
    config = small_config("rlmeta/Bandit-v0", {"arms": 2})
    algorithm, _ = build(config)
    actor = RecurrentActor(algorithm.policy, torch.Generator().manual_seed(0))
    actor.start_sequences(np.arange(2))
    ones = np.ones((2, 1), dtype=np.float32)
    actor.act(ones, np.array([1, 0]), np.array([1.0, 0.0], np.float32), ones[:, 0])
    before = actor.hidden_state
    assert torch.all(before.abs().sum(dim=1) > 0)
    actor.start_sequences(np.array([0]))
    after = actor.hidden_state
    assert torch.all(after[0] == 0)
    assert torch.equal(after[1], before[1])
    np.testing.assert_array_equal(actor.initial_states(), np.zeros((3, 8), np.float32))


def test_act_before_start_sequences_is_an_error():
    config = small_config("rlmeta/Bandit-v0", {"arms": 2})
    algorithm, _ = build(config)
    actor = RecurrentActor(algorithm.policy, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="start_sequences"):
        actor.act(np.ones((2, 1), np.float32), np.zeros(2), np.zeros(2), np.zeros(2))


def test_sampling_is_exactly_reproducible_from_the_seed():
    config = small_config("rlmeta/TabularMDP-v0")
    algorithm, envs = build(config)
    task = first_task(envs[0])
    first = algorithm.run_task(envs, TaskSpec(0, task, seed=11), weights_version=0)
    again = algorithm.run_task(envs, TaskSpec(0, task, seed=11), weights_version=0)
    other = algorithm.run_task(envs, TaskSpec(0, task, seed=12), weights_version=0)
    a, b, c = first.rollouts[0], again.rollouts[0], other.rollouts[0]
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.log_probs, b.log_probs)
    assert not np.array_equal(a.actions, c.actions)


@pytest.mark.parametrize(
    ("env", "kwargs", "value_network", "progress", "cell"),
    [
        ("rlmeta/TabularMDP-v0", {}, "shared", False, "gru"),  # discrete, 10-step episodes
        ("rlmeta/Navigation2D-v0", {"horizon": 6}, "shared", False, "gru"),  # Gaussian actions
        ("rlmeta/TabularMDP-v0", {}, "separate", False, "gru"),  # sampling skips the value GRU
        ("rlmeta/TabularMDP-v0", {}, "shared", True, "gru"),  # the episode count in the state
        ("rlmeta/Navigation2D-v0", {"horizon": 6}, "separate", True, "gru"),  # early ends
        ("rlmeta/TabularMDP-v0", {}, "separate", False, "layer_norm_gru"),
        ("rlmeta/Navigation2D-v0", {"horizon": 6}, "shared", True, "layer_norm_gru"),
    ],
)
def test_recomputing_stored_trials_reproduces_the_sampling_log_probs(
    env, kwargs, value_network, progress, cell
):
    config = small_config(env, kwargs, trials_per_task=5, value_network=value_network,
                          trial_progress_input=progress, recurrent_cell=cell)
    algorithm, envs = build(config, n_envs=3)  # fewer slots than trials: slots restart
    results = [
        algorithm.run_task(envs, TaskSpec(i, first_task(envs[0], i), seed=100 + i), 0)
        for i in range(2)
    ]
    batch = collate_trials(results)
    with torch.no_grad():
        distribution, _, _ = algorithm.policy(
            batch.observations,
            batch.prev_actions,
            batch.prev_rewards,
            batch.prev_dones,
            batch.initial_states,
        )
        recomputed = distribution.log_prob(batch.actions)
    real = batch.mask > 0
    assert int(real.sum()) == sum(r.env_steps for r in results)
    torch.testing.assert_close(recomputed[real], batch.old_log_probs[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("env", "kwargs"),
    [("rlmeta/TabularMDP-v0", {}), ("rlmeta/Navigation2D-v0", {"horizon": 6})],
)
def test_mode_actions_are_the_most_probable_action_at_every_step(env, kwargs):
    config = small_config(env, kwargs, trials_per_task=4)
    algorithm, envs = build(config, n_envs=4)
    task = first_task(envs[0])
    results = algorithm.run_tasks(envs, [TaskSpec(0, task, seed=21)], 0, actions="mode")
    batch = collate_trials(results)
    with torch.no_grad():
        distribution, _, _ = algorithm.policy(
            batch.observations, batch.prev_actions, batch.prev_rewards, batch.prev_dones,
            batch.initial_states,
        )
    real = batch.mask > 0
    if algorithm.policy.discrete_actions:
        expected = distribution.logits.argmax(dim=-1)
        assert torch.equal(batch.actions[real].long(), expected[real])
    else:
        expected = distribution.base_dist.loc
        torch.testing.assert_close(batch.actions[real], expected[real], atol=1e-5, rtol=1e-5)
    # Sampling from the same seed takes other actions, so the check above is not vacuous.
    sampled = algorithm.run_tasks(envs, [TaskSpec(0, task, seed=21)], 0)[0].rollouts[0]
    assert not np.array_equal(sampled.actions, results[0].rollouts[0].actions)


def test_an_unknown_action_mode_is_rejected_with_the_choices():
    config = small_config("rlmeta/Bandit-v0", {"arms": 3})
    algorithm, _ = build(config)
    with pytest.raises(ValueError, match="actions must be one of sample, mode, got 'greedy'"):
        RecurrentActor(algorithm.policy, torch.Generator(), actions="greedy")


def test_a_separate_value_gru_keeps_value_and_policy_gradients_apart():
    config = small_config("rlmeta/TabularMDP-v0", value_network="separate")
    algorithm, envs = build(config)
    policy = algorithm.policy
    assert policy.hidden_size == 2 * config.rl2.hidden_size
    result = algorithm.run_task(envs, TaskSpec(0, first_task(envs[0]), seed=3), 0)
    batch = collate_trials([result])
    inputs = (batch.observations, batch.prev_actions, batch.prev_rewards, batch.prev_dones,
              batch.initial_states)
    # The value function's own modules: value_encoder, value_gru, value_head.
    value_modules = ("value_encoder.", "value_gru.", "value_head.")
    assert sum(name.startswith(value_modules) for name, _ in policy.named_parameters()) == 8

    def grads_of(loss: torch.Tensor) -> dict[str, bool]:
        policy.zero_grad(set_to_none=True)
        loss.backward()
        return {
            name: p.grad is not None and bool(p.grad.abs().sum() > 0)
            for name, p in policy.named_parameters()
        }

    distribution, values, _ = policy(*inputs)
    # The value network alone gives forward's values (a learner group's value side runs it).
    assert torch.equal(policy.values(*inputs), values)
    from_value = grads_of(values.sum())
    distribution, values, _ = policy(*inputs)
    from_policy = grads_of(distribution.log_prob(batch.actions).sum())
    for name in from_value:
        assert from_value[name] == name.startswith(value_modules), name
        assert from_policy[name] == (not name.startswith(value_modules)), name

    # Sampling steps only the policy GRU: no values, and the value half of the state is as given.
    state = torch.randn(2, policy.hidden_size)
    step = [x[:1, :2] for x in inputs[:4]]
    _, values, final = policy(*step, state, compute_values=False)
    assert values is None
    torch.testing.assert_close(final[:, policy.gru_size :], state[:, policy.gru_size :])
    assert not torch.allclose(final[:, : policy.gru_size], state[:, : policy.gru_size])


def test_unsupported_spaces_are_rejected_with_the_space_named():
    box = gym.spaces.Box(-1, 1, (2,))
    with pytest.raises(ValueError, match="action_space"):
        RecurrentPolicy(box, gym.spaces.MultiBinary(3), [], 4)
    with pytest.raises(ValueError, match="observation_space"):
        RecurrentPolicy(gym.spaces.MultiDiscrete([2, 2]), box, [], 4)
    with pytest.raises(ValueError, match="activation"):
        RecurrentPolicy(box, box, [], 4, activation="gelu")
    with pytest.raises(ValueError, match="recurrent cell must be one of gru, layer_norm_gru"):
        RecurrentPolicy(box, box, [], 4, cell="lstm")
    shared = RecurrentPolicy(box, box, [], 4)
    with pytest.raises(ValueError, match="needs a separate value network"):
        shared.values(*[torch.zeros(1, 1)] * 4, shared.initial_state(1))
