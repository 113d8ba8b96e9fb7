"""Sampling sequences from a batch of task environments stepped together.

`Rollout` is the one data type that crosses process boundaries: numpy only, time-major, one
column per sequence. For MAML a sequence is one episode; for RL² it is a trial of several
episodes of the same task. Algorithms turn it into tensors; workers produce it.
"""

from __future__ import annotations

import math
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


class EnvStepError(RuntimeError):
    """An env raised or produced a non-finite value; names the env, the task and the step."""


def _check_finite(name: str, value: Any, env_id: str, task: Any, step: int) -> None:
    # ndarray methods, not np.all: this runs twice per env step.
    finite = math.isfinite(value) if isinstance(value, float | int) else np.isfinite(value).all()
    if not finite:
        raise EnvStepError(
            f"env {env_id!r} on task {task_protocol.describe_task(task)} returned a non-finite "
            f"{name} at step {step}: {value!r}; expected finite numbers"
        )


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
) -> Rollout:
    """Sample `num_sequences` sequences of `episodes_per_sequence` episodes each.

    The envs must already be set to `task`. Sequences are handed to env slots as slots free up,
    in a fixed order, so the result depends only on (seed, len(envs), actor's RNG), never on
    timing. Sequence j resets its first episode with seed `seed + j`; later episodes of the same
    sequence continue that env's RNG.
    """
    if num_sequences < 1 or episodes_per_sequence < 1:
        raise ValueError(
            f"num_sequences and episodes_per_sequence must be >= 1, got "
            f"{num_sequences} and {episodes_per_sequence}"
        )
    n_slots = min(len(envs), num_sequences)
    envs = envs[:n_slots]
    env_id = _env_id(envs[0])
    if task is None and callable(getattr(envs[0].unwrapped, "get_task", None)):
        task = task_protocol.get_task(envs[0])
    action_space = envs[0].action_space
    discrete = isinstance(action_space, gym.spaces.Discrete)
    act_shape: tuple[int, ...] = () if discrete else tuple(action_space.shape)

    # Per-sequence step lists, stacked and padded at the end.
    steps: list[list[tuple]] = [[] for _ in range(num_sequences)]
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
        obs, _ = envs[slot].reset(seed=seed + j)
        _check_finite("observation", obs, env_id, task, 0)
        observations[slot] = obs
        prev_rewards[slot] = 0.0
        prev_dones[slot] = 0.0

    for slot in range(n_slots):
        start(slot)
    actor.start_sequences(np.arange(n_slots))
    active = list(range(n_slots))

    while active:
        obs_batch = np.stack(observations).astype(np.float32, copy=False)
        if not np.isfinite(obs_batch).all():
            bad = int(np.flatnonzero(~np.isfinite(obs_batch).reshape(n_slots, -1).all(1))[0])
            _check_finite("observation", observations[bad], env_id, task, slot_t[bad])
        actions, log_probs = actor.act(
            obs_batch,
            prev_actions,
            np.asarray(prev_rewards, dtype=np.float32),
            np.asarray(prev_dones, dtype=np.float32),
        )
        step_log_probs = log_probs.tolist()
        restarted = []
        still_active = []
        for slot in active:
            action = actions[slot]
            j = slot_sequence[slot]
            t = slot_t[slot]
            try:
                obs, reward, terminated, truncated, info = envs[slot].step(action)
            except Exception as error:  # re-raised with the env, task and step named
                raise EnvStepError(
                    f"env {env_id!r} raised on task {task_protocol.describe_task(task)} at step "
                    f"{t} of episode {slot_episode[slot]}: {type(error).__name__}: {error}"
                ) from error
            reward = float(reward)
            if not math.isfinite(reward):
                _check_finite("reward", reward, env_id, task, t)
            done = bool(terminated or truncated)
            steps[j].append(
                (observations[slot], action, reward, done, bool(terminated),
                 step_log_probs[slot], t, slot_episode[slot])
            )
            if "success" in info:
                saw_success = True
                episode = slot_episode[slot]
                successes[j, episode] = max(successes[j, episode], float(info["success"]))
            prev_rewards[slot] = reward
            prev_dones[slot] = float(done)
            still_active.append(slot)
            if not done:
                slot_t[slot] = t + 1
                observations[slot] = obs
                continue
            slot_episode[slot] += 1
            slot_t[slot] = 0
            if slot_episode[slot] < episodes_per_sequence:
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

    return _stack(steps, episodes_per_sequence, discrete, act_shape, task, seed, weights_version,
                  successes if saw_success else None)


def _stack(
    steps: list[list[tuple]],
    episodes_per_sequence: int,
    discrete: bool,
    act_shape: tuple[int, ...],
    task: Any,
    seed: int,
    weights_version: int,
    successes: np.ndarray | None,
) -> Rollout:
    n = len(steps)
    horizon = max(len(s) for s in steps)
    obs_shape = np.asarray(steps[0][0][0]).shape
    observations = np.zeros((horizon, n, *obs_shape), dtype=np.float32)
    actions = np.zeros((horizon, n, *act_shape), dtype=np.int64 if discrete else np.float32)
    rewards = np.zeros((horizon, n), dtype=np.float32)
    dones = np.zeros((horizon, n), dtype=bool)
    terminated = np.zeros((horizon, n), dtype=bool)
    mask = np.zeros((horizon, n), dtype=np.float32)
    log_probs = np.zeros((horizon, n), dtype=np.float32)
    timesteps = np.zeros((horizon, n), dtype=np.int64)
    episode_index = np.zeros((horizon, n), dtype=np.int64)
    for j, sequence in enumerate(steps):
        length = len(sequence)
        obs, act, rew, done, term, logp, t, ep = zip(*sequence, strict=True)
        observations[:length, j] = np.stack(obs)
        actions[:length, j] = np.stack(act)
        rewards[:length, j] = rew
        dones[:length, j] = done
        terminated[:length, j] = term
        mask[:length, j] = 1.0
        log_probs[:length, j] = logp
        timesteps[:length, j] = t
        episode_index[:length, j] = ep
        # Padding continues the last episode's index so per-episode sums stay correct.
        episode_index[length:, j] = ep[-1]
    return Rollout(
        observations=observations,
        actions=actions,
        rewards=rewards,
        dones=dones,
        terminated=terminated,
        mask=mask,
        log_probs=log_probs,
        timesteps=timesteps,
        episode_index=episode_index,
        task=task,
        seed=seed,
        weights_version=weights_version,
        successes=successes,
    )
