"""Sampling sequences from a batch of task environments stepped together.

`Rollout` is the one data type that crosses process boundaries: numpy only, time-major, one
column per sequence. For MAML a sequence is one episode; for RL² it is a trial of several
episodes of the same task. Algorithms turn it into tensors; workers produce it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from rlmeta import tasks as task_protocol


class Actor(Protocol):
    """What the sampler needs from a policy: one batched forward for all env slots per step."""

    def start_sequences(self, slots: np.ndarray) -> None:
        """Slots (indices into the env batch) begin a new sequence: reset recurrent state."""

    def act(
        self,
        observations: np.ndarray,
        prev_actions: np.ndarray,
        prev_rewards: np.ndarray,
        prev_dones: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(actions, log-probabilities) for every slot; feed-forward policies ignore prev_*."""


@dataclass
class Rollout:
    """Time-major sequences sampled on one task, padded to the longest with `mask == 0`."""

    observations: np.ndarray  # [T, N, *obs_shape] float32
    actions: np.ndarray  # [T, N, act_dim] float32 (continuous) or [T, N] int64 (discrete)
    rewards: np.ndarray  # [T, N] float32
    dones: np.ndarray  # [T, N] bool: the step ends an episode (terminated or truncated)
    terminated: np.ndarray  # [T, N] bool: the episode ended in a terminal state (no bootstrap)
    mask: np.ndarray  # [T, N] float32: 1 for real steps, 0 for padding
    log_probs: np.ndarray  # [T, N] float32: log π(a|s) under the policy that sampled
    timesteps: np.ndarray  # [T, N] int64: step index inside its episode
    episode_index: np.ndarray  # [T, N] int64: which episode of the sequence the step belongs to
    task: Any = None
    seed: int = 0
    weights_version: int = 0
    successes: np.ndarray | None = None  # [N, episodes_per_sequence] info["success"], if any
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        """Real (unpadded) environment steps in this rollout."""
        return int(self.mask.sum())

    @property
    def num_sequences(self) -> int:
        return int(self.mask.shape[1])

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, shape [N, episodes_per_sequence]."""
        n_episodes = int(self.episode_index.max()) + 1 if self.mask.any() else 1
        returns = np.zeros((self.num_sequences, n_episodes), dtype=np.float64)
        columns = np.broadcast_to(np.arange(self.num_sequences), self.mask.shape)
        real = self.mask > 0
        np.add.at(returns, (columns[real], self.episode_index[real]), self.rewards[real])
        return returns

    def mean_return(self) -> float:
        """Mean undiscounted return per episode."""
        return float(self.episode_returns().mean())

    def select_sequences(self, columns: Sequence[int] | np.ndarray) -> Rollout:
        """The sub-rollout of sequences `columns`: [T, N] arrays sliced on axis 1 (T kept, so
        trailing rows may be all padding), `successes` rows and every `extras` array whose first
        axis is N; other extras, task, seed and version are carried over as they are."""
        columns = np.asarray(columns, dtype=np.int64)
        n = self.num_sequences
        if columns.ndim != 1 or columns.size == 0 or columns.min() < -n or columns.max() >= n:
            raise ValueError(
                f"columns must be a non-empty 1-D list of sequence indices below {n}, "
                f"got {columns.tolist()}"
            )
        time_major = {
            name: getattr(self, name)[:, columns]
            for name in ("observations", "actions", "rewards", "dones", "terminated", "mask",
                         "log_probs", "timesteps", "episode_index")
        }
        extras = {
            key: value[columns] if np.ndim(value) >= 1 and np.shape(value)[0] == n else value
            for key, value in self.extras.items()
        }
        return Rollout(
            **time_major,
            task=self.task,
            seed=self.seed,
            weights_version=self.weights_version,
            successes=None if self.successes is None else self.successes[columns],
            extras=extras,
        )


class EnvStepError(RuntimeError):
    """An env raised or produced a non-finite value; names the env, the task and the step."""


def set_task_on(envs: list[gym.Env], task: Any, task_index: int) -> None:
    """Set `task` on every env; a rejected task value is an `EnvStepError` naming the env, the
    task and its index, so runtimes report it like any other env failure."""
    for env in envs:
        try:
            task_protocol.set_task(env, task)
        except Exception as error:
            raise EnvStepError(
                f"env {_env_id(env)!r} rejected task {task_protocol.describe_task(task)} "
                f"(task index {task_index}) at set_task: {type(error).__name__}: {error}"
            ) from error


def _check_finite(name: str, value: Any, env_id: str, task: Any, step: int) -> None:
    # ndarray methods, not np.all: this runs twice per env step.
    finite = math.isfinite(value) if isinstance(value, float | int) else np.isfinite(value).all()
    if not finite:
        raise EnvStepError(
            f"env {env_id!r} on task {_describe(task)} returned a non-finite "
            f"{name} at step {step}: {value!r}; expected finite numbers"
        )


def _describe(task: Any) -> str:
    # A list is the tasks of several task groups sampled together (`RL2Algorithm.run_tasks`).
    if isinstance(task, list):
        return "[" + ", ".join(task_protocol.describe_task(t) for t in task) + "]"
    return task_protocol.describe_task(task)


def _env_id(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def sample_rollout(
    envs: list[gym.Env],
    actor: Actor,
    num_sequences: int,
    episodes_per_sequence: int = 1,
    seed: int = 0,
    task: Any = None,
    weights_version: int = 0,
    sequence_seeds: Sequence[int] | None = None,
) -> Rollout:
    """Sample `num_sequences` sequences of `episodes_per_sequence` episodes each.

    The envs must already be set to `task` (used for `Rollout.task` and error messages; a list
    when slot groups hold different tasks). Sequences are handed to env slots as slots free up,
    in a fixed order, so the result depends only on (seed, len(envs), actor's RNG), never on
    timing. Sequence j resets its first episode with seed `seed + j`, or `sequence_seeds[j]`
    when given; later episodes of the same sequence continue that env's RNG. With
    `num_sequences <= len(envs)` sequence j runs in env slot j.
    """
    if num_sequences < 1 or episodes_per_sequence < 1:
        raise ValueError(
            f"num_sequences and episodes_per_sequence must be >= 1, got "
            f"{num_sequences} and {episodes_per_sequence}"
        )
    if sequence_seeds is None:
        reset_seeds = range(seed, seed + num_sequences)
    else:
        reset_seeds = [int(s) for s in sequence_seeds]
        if len(reset_seeds) != num_sequences:
            raise ValueError(
                f"sequence_seeds must hold one seed per sequence ({num_sequences}), got "
                f"{len(reset_seeds)}"
            )
    n_slots = min(len(envs), num_sequences)
    envs = envs[:n_slots]
    env_id = _env_id(envs[0])
    if task is None and callable(getattr(envs[0].unwrapped, "get_task", None)):
        task = task_protocol.get_task(envs[0])
    action_space = envs[0].action_space
    discrete = isinstance(action_space, gym.spaces.Discrete)
    act_shape: tuple[int, ...] = () if discrete else tuple(action_space.shape)

    # What each batch step produced, for every slot, plus one entry per real env step saying
    # which batch row it was and where it lands; scattered into [T, N] arrays once at the end.
    # Per-step tuples stacked per sequence cost more than the bookkeeping they replace.
    obs_batches: list[np.ndarray] = []
    action_batches: list[np.ndarray] = []
    log_prob_batches: list[np.ndarray] = []
    record = _StepRecord()
    successes = np.zeros((num_sequences, episodes_per_sequence), dtype=np.float32)
    saw_success = False

    # Per-slot bookkeeping in plain Python lists: numpy scalar access costs more than the
    # arithmetic, and this loop runs once per env step.
    slot_sequence = [-1] * n_slots
    slot_episode = [0] * n_slots
    slot_t = [0] * n_slots
    observations: list[Any] = [None] * n_slots
    prev_actions = np.zeros((n_slots, *act_shape), dtype=np.int64 if discrete else np.float32)
    prev_rewards = [0.0] * n_slots
    prev_dones = [0.0] * n_slots
    next_sequence = 0

    def start(slot: int) -> None:
        nonlocal next_sequence
        j = next_sequence
        next_sequence += 1
        slot_sequence[slot] = j
        slot_episode[slot] = 0
        slot_t[slot] = 0
        obs, _ = envs[slot].reset(seed=reset_seeds[j])
        _check_finite("observation", obs, env_id, task, 0)
        observations[slot] = obs
        prev_rewards[slot] = 0.0
        prev_dones[slot] = 0.0

    for slot in range(n_slots):
        start(slot)
    actor.start_sequences(np.arange(n_slots))
    active = list(range(n_slots))
    add_row, add_sequence, add_t, add_episode = (
        record.rows.append, record.sequences.append, record.timesteps.append,
        record.episodes.append,
    )
    add_reward, add_done, add_terminated = (
        record.rewards.append, record.dones.append, record.terminated.append,
    )

    while active:
        # np.array over a list of equal-shape arrays is several times faster than np.stack.
        obs_batch = np.array(observations, dtype=np.float32)
        if not np.isfinite(obs_batch).all():
            bad = int(np.flatnonzero(~np.isfinite(obs_batch).reshape(n_slots, -1).all(1))[0])
            _check_finite("observation", observations[bad], env_id, task, slot_t[bad])
        actions, log_probs = actor.act(
            obs_batch,
            prev_actions,
            np.asarray(prev_rewards, dtype=np.float32),
            np.asarray(prev_dones, dtype=np.float32),
        )
        row_base = len(obs_batches) * n_slots
        obs_batches.append(obs_batch)
        action_batches.append(actions)
        log_prob_batches.append(log_probs)
        restarted = []
        still_active = []
        for slot in active:
            t = slot_t[slot]
            try:
                obs, reward, terminated, truncated, info = envs[slot].step(actions[slot])
            except Exception as error:  # re-raised with the env, task and step named
                raise EnvStepError(
                    f"env {env_id!r} raised on task {_describe(task)} at step "
                    f"{t} of episode {slot_episode[slot]}: {type(error).__name__}: {error}"
                ) from error
            reward = float(reward)
            if not math.isfinite(reward):
                _check_finite("reward", reward, env_id, task, t)
            done = bool(terminated or truncated)
            episode = slot_episode[slot]
            add_row(row_base + slot)
            add_sequence(slot_sequence[slot])
            add_t(t)
            add_episode(episode)
            add_reward(reward)
            add_done(done)
            add_terminated(bool(terminated))
            if "success" in info:
                saw_success = True
                j = slot_sequence[slot]
                successes[j, episode] = max(successes[j, episode], float(info["success"]))
            prev_rewards[slot] = reward
            prev_dones[slot] = float(done)
            still_active.append(slot)
            if not done:
                slot_t[slot] = t + 1
                observations[slot] = obs
                continue
            slot_episode[slot] = episode + 1
            slot_t[slot] = 0
            if episode + 1 < episodes_per_sequence:
                # Same sequence, next episode: the recurrent state carries over.
                obs, _ = envs[slot].reset()
                observations[slot] = obs
            elif next_sequence < num_sequences:
                start(slot)
                restarted.append(slot)
            else:
                still_active.pop()
        active = still_active
        # The previous action of every slot is the one just taken; a new sequence starts at 0.
        prev_actions = actions.copy()
        if restarted:
            prev_actions[restarted] = 0
            actor.start_sequences(np.asarray(restarted))

    arrays = record.scatter(
        num_sequences,
        np.concatenate(obs_batches),
        np.concatenate(action_batches).astype(prev_actions.dtype, copy=False),
        np.concatenate(log_prob_batches),
    )
    return Rollout(**arrays, task=task, seed=seed, weights_version=weights_version,
                   successes=successes if saw_success else None)


@dataclass
class _StepRecord:
    """One entry per real env step, in the order they were taken: the batch row (batch step ×
    slots + slot) holding its observation, action and log-probability, and the rest."""

    rows: list[int] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    timesteps: list[int] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    dones: list[bool] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)

    def scatter(
        self,
        num_sequences: int,
        observation_rows: np.ndarray,
        action_rows: np.ndarray,
        log_prob_rows: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The `Rollout` arrays: the steps scattered into time-major [T, N] arrays, padded with
        `mask == 0`."""
        rows = np.asarray(self.rows, dtype=np.int64)
        sequences = np.asarray(self.sequences, dtype=np.int64)
        # A step's time index is how many earlier steps its sequence has: rank within the
        # sequence in a stable sort by sequence, since steps were recorded in time order.
        order = np.argsort(sequences, kind="stable")
        lengths = np.bincount(sequences, minlength=num_sequences)
        firsts = np.cumsum(lengths) - lengths
        position = np.empty_like(rows)
        position[order] = np.arange(len(rows)) - np.repeat(firsts, lengths)
        horizon = int(lengths.max())
        where = (position, sequences)

        def place(values: Any, dtype: Any, trailing: tuple[int, ...] = ()) -> np.ndarray:
            out = np.zeros((horizon, num_sequences, *trailing), dtype=dtype)
            out[where] = values
            return out

        episodes = np.asarray(self.episodes, dtype=np.int64)
        episode_index = place(episodes, np.int64)
        mask = place(1.0, np.float32)
        # Padding continues each sequence's last episode index so per-episode sums stay right.
        last_episode = episodes[order[firsts + lengths - 1]]
        episode_index = np.where(mask > 0, episode_index, last_episode[None, :])
        return {
            "observations": place(observation_rows[rows], np.float32, observation_rows.shape[1:]),
            "actions": place(action_rows[rows], action_rows.dtype, action_rows.shape[1:]),
            "rewards": place(self.rewards, np.float32),
            "dones": place(self.dones, bool),
            "terminated": place(self.terminated, bool),
            "mask": mask,
            "log_probs": place(log_prob_rows[rows], np.float32),
            "timesteps": place(np.asarray(self.timesteps, dtype=np.int64), np.int64),
            "episode_index": episode_index,
        }
