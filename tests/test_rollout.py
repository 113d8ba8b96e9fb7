"""The vector sampler: padding, episode bookkeeping, determinism and error reporting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlmeta.rollout import EnvStepError, sample_rollout


class CountingEnv(gym.Env):
    """Observation is the step count; episode length is the task's `length`; reward = action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int = 3, fail_at: int | None = None, nan_at: int | None = None):
        self.task = {"length": length}
        self.fail_at = fail_at
        self.nan_at = nan_at
        self.t = 0

    def sample_tasks(self, n, rng):
        return [{"length": int(k)} for k in rng.integers(1, 5, n)]

    def set_task(self, task):
        self.task = task

    def get_task(self):
        return self.task

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.np_random.uniform()], dtype=np.float32), {}

    def step(self, action):
        if self.fail_at is not None and self.t == self.fail_at:
            raise RuntimeError("simulator exploded")
        self.t += 1
        reward = float(np.asarray(action).sum())
        if self.nan_at is not None and self.t > self.nan_at:
            reward = float("nan")
        done = self.t >= self.task["length"]
        return np.array([self.t], dtype=np.float32), reward, False, done, {"success": self.t == 2}


class ConstantActor:
    """Acts with a constant per slot; records which slots started sequences and the inputs seen."""

    def __init__(self, value: float = 1.0):
        self.value = value
        self.starts: list[list[int]] = []
        self.prev_dones: list[np.ndarray] = []

    def start_sequences(self, slots):
        self.starts.append(list(slots))

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        self.prev_dones.append(prev_dones.copy())
        n = len(observations)
        return np.full((n, 1), self.value, np.float32), np.full(n, -0.5, np.float32)


def _envs(n, **kwargs):
    return [CountingEnv(**kwargs) for _ in range(n)]


def test_shapes_padding_and_returns_for_more_sequences_than_envs():
    rollout = sample_rollout(_envs(2, length=3), ConstantActor(0.5), num_sequences=5, seed=7)
    assert rollout.observations.shape == (3, 5, 1)
    assert rollout.actions.shape == (3, 5, 1)
    assert rollout.num_steps == 15
    np.testing.assert_allclose(rollout.episode_returns(), np.full((5, 1), 1.5))
    assert rollout.dones[-1].all() and not rollout.dones[:-1].any()
    np.testing.assert_array_equal(rollout.timesteps[:, 0], [0, 1, 2])
    np.testing.assert_allclose(rollout.log_probs, -0.5)
    np.testing.assert_allclose(rollout.successes, 1.0)
    assert rollout.success_rate() == 1.0
    rollout.successes[:3] = 0.0
    assert rollout.success_rate() == pytest.approx(0.4)
    rollout.successes = None
    with pytest.raises(ValueError, match="no successes"):
        rollout.success_rate()


def test_episodes_of_a_sequence_share_a_column_and_the_actor_state():
    actor = ConstantActor()
    rollout = sample_rollout(_envs(1, length=2), actor, num_sequences=2, episodes_per_sequence=3)
    assert rollout.observations.shape[:2] == (6, 2)
    np.testing.assert_array_equal(rollout.episode_index[:, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(rollout.dones[:, 1], [0, 1, 0, 1, 0, 1])
    # One env, two sequences: the actor is told twice that a sequence starts, never at episode ends.
    assert actor.starts == [[0], [0]]
    # The done flag of the previous step reaches the actor (RL² reads it) ...
    assert [float(d[0]) for d in actor.prev_dones[:6]] == [0, 0, 1, 0, 1, 0]
    # ... and is cleared when a new sequence starts.
    assert float(actor.prev_dones[6][0]) == 0.0
    assert rollout.episode_returns().shape == (2, 3)


def test_variable_lengths_are_padded_with_zero_mask():
    envs = _envs(2)
    envs[0].set_task({"length": 1})
    envs[1].set_task({"length": 4})
    rollout = sample_rollout(envs, ConstantActor(), num_sequences=2)
    np.testing.assert_array_equal(rollout.mask[:, 0], [1, 0, 0, 0])
    np.testing.assert_array_equal(rollout.mask[:, 1], [1, 1, 1, 1])
    assert rollout.rewards[1:, 0].sum() == 0.0
    np.testing.assert_allclose(rollout.episode_returns()[:, 0], [1.0, 4.0])


def test_same_seed_same_rollout_different_seed_different():
    first = sample_rollout(_envs(3), ConstantActor(), num_sequences=4, seed=11)
    again = sample_rollout(_envs(3), ConstantActor(), num_sequences=4, seed=11)
    other = sample_rollout(_envs(3), ConstantActor(), num_sequences=4, seed=12)
    np.testing.assert_array_equal(first.observations, again.observations)
    assert not np.array_equal(first.observations, other.observations)


def test_env_exception_names_env_task_and_step():
    with pytest.raises(EnvStepError, match=r"raised on task \{length=3\} at step 1.*exploded"):
        sample_rollout(_envs(1, fail_at=1), ConstantActor(), num_sequences=1)


def test_non_finite_reward_is_an_error_not_data():
    with pytest.raises(EnvStepError, match="non-finite reward at step 1"):
        sample_rollout(_envs(1, nan_at=1), ConstantActor(), num_sequences=1)


def test_rejects_empty_request():
    with pytest.raises(ValueError, match="num_sequences"):
        sample_rollout(_envs(1), ConstantActor(), num_sequences=0)


class NanObservationEnv(CountingEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t >= 2:
            obs = np.array([np.nan], dtype=np.float32)
        return obs, reward, terminated, truncated, info


def test_non_finite_observation_is_an_error_naming_the_step():
    envs = [CountingEnv(), NanObservationEnv()]
    with pytest.raises(EnvStepError, match="non-finite observation at step 2"):
        sample_rollout(envs, ConstantActor(), num_sequences=2)


class SeedRecordingEnv(CountingEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reset_seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        self.reset_seeds.append(seed)
        return super().reset(seed=seed, options=options)


def test_sequence_seeds_replace_seed_plus_j_for_each_sequence_first_reset():
    envs = [SeedRecordingEnv(length=2) for _ in range(3)]
    rollout = sample_rollout(envs, ConstantActor(), 3, episodes_per_sequence=2, seed=5,
                             sequence_seeds=[70, 40, 90])
    # One sequence per slot: slot j's first reset uses seed j, its second episode continues.
    assert [env.reset_seeds for env in envs] == [[70, None], [40, None], [90, None]]
    default = sample_rollout(_envs(3, length=2), ConstantActor(), 3, 2, seed=70)
    assert np.array_equal(rollout.observations[:, 0], default.observations[:, 0])
    with pytest.raises(ValueError, match=r"one seed per sequence \(3\), got 2"):
        sample_rollout(envs, ConstantActor(), 3, sequence_seeds=[1, 2])


def test_select_sequences_slices_every_field_by_column():
    envs = [CountingEnv(length=k) for k in (1, 3, 2, 4)]
    rollout = sample_rollout(envs, ConstantActor(), 4, episodes_per_sequence=2, seed=3)
    rollout.extras["initial_state"] = np.arange(8, dtype=np.float32).reshape(4, 2)
    rollout.extras["note"] = np.array([7.0])  # not one row per sequence: carried as it is
    columns = [3, 1]
    part = rollout.select_sequences(columns)
    for name in ("observations", "actions", "rewards", "dones", "terminated", "mask",
                 "log_probs", "timesteps", "episode_index"):
        assert np.array_equal(getattr(part, name), getattr(rollout, name)[:, columns]), name
    assert np.array_equal(part.successes, rollout.successes[columns])
    assert np.array_equal(part.extras["initial_state"], [[6.0, 7.0], [2.0, 3.0]])
    assert part.extras["note"] is rollout.extras["note"]
    assert (part.task, part.seed, part.weights_version) == (rollout.task, 3, 0)
    assert np.array_equal(part.episode_returns(), rollout.episode_returns()[columns])
    assert part.num_steps == 2 * (4 + 3)
    with pytest.raises(ValueError, match="sequence indices below 4, got \\[4\\]"):
        rollout.select_sequences([4])


class EndingEnv(CountingEnv):
    """Episodes of 1, 2, 3, ... steps in turn (one counter per env); odd lengths end in a
    terminal state, even ones are truncated; info["success"] only on the episode's last step."""

    def __init__(self):
        super().__init__()
        self.episodes = 0

    def reset(self, *, seed=None, options=None):
        self.episodes += 1
        self.task = {"length": self.episodes}
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, _, done, _ = super().step(action)
        terminal = done and self.task["length"] % 2 == 1
        info = {"success": 1.0} if done else {}
        return obs, reward, terminal, done and not terminal, info


def test_terminal_and_truncated_endings_are_told_apart_per_step():
    # One env, two sequences of two episodes: episode lengths 1, 2 (sequence 0) and 3, 4 (1).
    rollout = sample_rollout([EndingEnv()], ConstantActor(), num_sequences=2,
                             episodes_per_sequence=2)
    assert rollout.observations.shape[:2] == (7, 2)
    np.testing.assert_array_equal(rollout.mask.sum(0), [3, 7])
    np.testing.assert_array_equal(rollout.timesteps[:3, 0], [0, 0, 1])
    np.testing.assert_array_equal(rollout.timesteps[:, 1], [0, 1, 2, 0, 1, 2, 3])
    np.testing.assert_array_equal(rollout.dones[:3, 0], [1, 0, 1])
    np.testing.assert_array_equal(rollout.terminated[:3, 0], [1, 0, 0])
    np.testing.assert_array_equal(rollout.dones[:, 1], [0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(rollout.terminated[:, 1], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(rollout.episode_index[:, 0], [0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(rollout.successes, np.ones((2, 2)))
    np.testing.assert_array_equal(rollout.episode_returns(), [[1.0, 2.0], [3.0, 4.0]])


class NanRaisingActor(ConstantActor):
    """Fails on a non-finite input, as sampling a categorical policy from NaN logits does."""

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        if not np.isfinite(observations).all():
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return super().act(observations, prev_actions, prev_rewards, prev_dones)


def test_an_actor_failing_on_a_non_finite_observation_reports_the_observation():
    with pytest.raises(EnvStepError, match="non-finite observation at step 2") as caught:
        sample_rollout([NanObservationEnv()], NanRaisingActor(), num_sequences=1)
    assert "probability tensor" in str(caught.value.__cause__)


class NanThenRaisingEnv(NanObservationEnv):
    def step(self, action):
        if self.t == 2:
            raise RuntimeError("simulator exploded")
        return super().step(action)


def test_an_env_failing_after_a_non_finite_observation_reports_the_observation():
    with pytest.raises(EnvStepError, match="non-finite observation at step 2") as caught:
        sample_rollout([NanThenRaisingEnv()], ConstantActor(), num_sequences=1)
    assert "exploded" in str(caught.value.__cause__)


def test_an_actor_failing_on_finite_inputs_raises_its_own_error():
    class BrokenActor(ConstantActor):
        def act(self, observations, prev_actions, prev_rewards, prev_dones):
            raise RuntimeError("actor bug")

    with pytest.raises(RuntimeError, match="actor bug"):
        sample_rollout(_envs(1), BrokenActor(), num_sequences=1)


def test_previous_actions_are_not_written_into_the_recorded_actions():
    # A new sequence starts with previous action 0 on a copy; the record keeps what was taken.
    rollout = sample_rollout(_envs(1, length=2), ConstantActor(0.5), num_sequences=3)
    np.testing.assert_array_equal(rollout.actions[:, :, 0], np.full((2, 3), 0.5, np.float32))
