"""Sampling sequences from a batch of task environments stepped together.

`Rollout` is the one data type that crosses process boundaries: numpy only, time-major, one
column per sequence. For MAML a sequence is one episode; for RL² it is a trial of several
episodes of the same task. Algorithms turn it into tensors; workers produce it.
"""

from __future__ import annotations

import itertools
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
        prev_rewards: Sequence[float],
        prev_dones: Sequence[float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """(actions, log-probabilities) for every slot; feed-forward policies ignore prev_*.

        Previous rewards and done flags come as plain lists (one float per slot), valid during
        the call only: making arrays of them would cost every policy a numpy call per step.
        """


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

    def success_rate(self) -> float:
        """Fraction of sequences that succeeded in any of their episodes (Meta-World's
        `info["success"]` at any step); raises where the env reports no success."""
        if self.successes is None:
            raise ValueError("this rollout has no successes; the env reports no info['success']")
        return float(self.successes.max(axis=1).mean())

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
    """An env raised, did not return in time, or returned a value of the wrong kind (non-finite,
    wrong shape, not a number); names the env, the task and the step."""


class EnvTimeout(BaseException):
    """Raised inside an env call that outlived its deadline (see `env_call_timeout`).

    A BaseException, like KeyboardInterrupt, so that an env's own `except Exception` does not
    swallow it; the sampler turns it into an `EnvStepError`.
    """


class _Watch:
    """The env call in progress, as the sampler marks it: `call` is a number unique to each
    call while it runs, 0 between calls (a counter costs less per step than a clock read).
    The watchdog sets `overdue` to the call it found running past the limit."""

    __slots__ = ("call", "calls", "overdue", "timeout_s")

    def __init__(self) -> None:
        self.call = 0
        self.calls = 0
        self.overdue = -1
        self.timeout_s = 0.0

    def enter(self) -> None:
        self.calls += 1
        self.call = self.calls


_watch = _Watch()


def _on_alarm(signum: int, frame: Any) -> None:
    # The watchdog signals an overdue call, which may have returned since.
    if _watch.call == _watch.overdue:
        raise EnvTimeout()


@contextmanager
def env_call_timeout(seconds: float | None) -> Iterator[None]:
    """Inside the block, an env `reset`, `step` or `set_task` made by `sample_rollout` or
    `set_task_on` that runs longer than `seconds` is interrupted and becomes an `EnvStepError`
    saying so; None or 0: no limit.

    A watchdog thread looks at the call in progress a few times per limit and sends SIGALRM to
    the main thread when it is overdue; the handler raises `EnvTimeout` inside the call. So the
    limit holds where the main thread samples (the driver with `workers: 0`, a Ray worker
    actor), interrupts Python code (`time.sleep`, lock and socket waits, loops) but not a C
    extension that never returns to the interpreter, and a run with no hang receives no signal.
    Elsewhere the block runs without a limit and warns. Nested blocks keep the outer limit.
    """
    if not seconds or _watch.timeout_s:
        yield
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_kill"
    ):
        warnings.warn(
            "env_step_timeout_s is not enforced outside the main thread of a POSIX process",
            RuntimeWarning, stacklevel=3,
        )
        yield
        return
    previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _watch.timeout_s = float(seconds)
    stop = threading.Event()
    main = threading.main_thread().ident
    # A quarter of the limit, at most a second: a call is interrupted after running between
    # the limit and one period more.
    period = min(max(seconds / 4, 0.01), 1.0)

    def watchdog() -> None:
        seen, since = 0, 0.0
        while not stop.wait(period):
            call, now = _watch.call, time.monotonic()
            if call != seen:
                seen, since = call, now
            elif call and now - since >= seconds:
                _watch.overdue = call
                signal.pthread_kill(main, signal.SIGALRM)

    thread = threading.Thread(target=watchdog, name="rlmeta-env-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _watch.timeout_s, _watch.call, _watch.overdue = 0.0, 0, -1
        # A system call: a signal the watchdog sent last is delivered on its return, to this
        # handler, not to the previous one (SIGALRM's default ends the process).
        signal.pthread_sigmask(signal.SIG_BLOCK, [])
        signal.signal(signal.SIGALRM, previous_handler)


def _timed_out(env_id: str, call: str, where: str) -> EnvStepError:
    return EnvStepError(
        f"env {env_id!r} did not return from {call} within {_watch.timeout_s:g}s "
        f"(env_step_timeout_s) {where}; expected every reset, step and set_task to return"
    )


def set_task_on(envs: list[gym.Env], task: Any, task_index: int) -> None:
    """Set `task` on every env; a rejected task value is an `EnvStepError` naming the env, the
    task and its index, so runtimes report it like any other env failure."""
    for env in envs:
        _watch.enter()
        try:
            task_protocol.set_task(env, task)
        except EnvTimeout:
            where = f"on task {task_protocol.describe_task(task)} (task index {task_index})"
            raise _timed_out(_env_id(env), "set_task", where) from None
        except Exception as error:
            raise EnvStepError(
                f"env {_env_id(env)!r} rejected task {task_protocol.describe_task(task)} "
                f"(task index {task_index}) at set_task: {type(error).__name__}: {error}"
            ) from error
        finally:
            _watch.call = 0


def _non_finite(name: str, value: Any, env_id: str, task: Any, step: int) -> EnvStepError:
    return EnvStepError(
        f"env {env_id!r} on task {_describe(task)} returned a non-finite "
        f"{name} at step {step}: {value!r}; expected finite numbers"
    )


def _check_finite(name: str, value: Any, env_id: str, task: Any, step: int) -> None:
    finite = math.isfinite(value) if isinstance(value, float | int) else np.isfinite(value).all()
    if not finite:
        raise _non_finite(name, value, env_id, task, step)


def _check_observation(
    obs: Any, shape: tuple[int, ...] | None, call: str, env_id: str, where: Callable[[], str]
) -> None:
    """An observation of another shape than the env's observation space is an error naming
    both (otherwise the policy's first layer fails with a shape message that names no env)."""
    if shape is not None and np.shape(obs) != shape:
        raise EnvStepError(
            f"env {env_id!r} returned an observation of shape {np.shape(obs)} from {call} "
            f"{where()}; expected shape {shape} (its observation_space)"
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    space_shape = getattr(envs[0].observation_space, "shape", None)
    obs_shape = None if space_shape is None else tuple(space_shape)
    batch_shape = None if obs_shape is None else (n_slots, *obs_shape)

    # Each batch step keeps, for every slot, the observation, action and log-probability it fed
    # the actor, and a snapshot of which slots were stepping and where each stood (sequence,
    # episode, step); each real env step adds only its reward and how it ended. Everything is
    # scattered into [T, N] arrays once at the end: per-step work is the cost that counts here.
    record = _StepRecord(n_slots)
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
    steps = [env.step for env in envs]
    watch = _watch

    def where(slot: int) -> str:
        return (f"on task {_describe(task)} at step {slot_t[slot]} of episode "
                f"{slot_episode[slot]}")

    def reset(slot: int, seed: int | None) -> Any:
        """The env's first observation of an episode, checked for shape and finiteness."""
        watch.enter()
        try:
            result = envs[slot].reset(seed=seed)
        except EnvTimeout:
            raise _timed_out(env_id, "reset", where(slot)) from None
        except Exception as error:
            raise EnvStepError(
                f"env {env_id!r} raised from reset {where(slot)}: {type(error).__name__}: "
                f"{error}"
            ) from error
        finally:
            watch.call = 0
        if not isinstance(result, tuple) or len(result) != 2:
            raise EnvStepError(
                f"env {env_id!r} returned {_short(result)} from reset {where(slot)}; expected "
                f"a pair (observation, info)"
            )
        obs = result[0]
        _check_observation(obs, obs_shape, "reset", env_id, lambda slot=slot: where(slot))
        _check_finite("observation", obs, env_id, task, slot_t[slot])
        return obs

    def start(slot: int) -> None:
        nonlocal next_sequence
        j = next_sequence
        next_sequence += 1
        slot_sequence[slot] = j
        slot_episode[slot] = 0
        slot_t[slot] = 0
        observations[slot] = reset(slot, reset_seeds[j])
        prev_rewards[slot] = 0.0

    for slot in range(n_slots):
        start(slot)
    actor.start_sequences(np.arange(n_slots))
    active = list(range(n_slots))
    add_reward, add_end = record.rewards.append, record.ends.append
    isfinite = math.isfinite

    def bad_observation() -> EnvStepError | None:
        # Observations fed to the actor are checked once per rollout (below), and where the
        # actor or an env raised, since a non-finite observation may be why. Not per batch
        # step: with a MuJoCo env's state in the CPU caches any numpy call there costs ~6 µs,
        # and this check alone slowed HalfCheetahVel sampling by 3.6%
        # (benchmarks/results/sampler_notes.md).
        # A step may also have returned an observation of another shape than the others.
        for slot in active:
            _check_observation(observations[slot], obs_shape, "step", env_id,
                               lambda slot=slot: where(slot))
        found = record.first_non_finite_observation()
        return None if found is None else _non_finite("observation", found[1], env_id, task,
                                                      found[0])

    while active:
        # np.array over a list of equal-shape arrays is several times faster than np.stack.
        try:
            obs_batch = np.array(observations, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise bad_observation() or EnvStepError(
                f"env {env_id!r} returned observations that are not arrays of numbers "
                f"{where(active[0])}: {error}"
            ) from error
        if batch_shape is not None and obs_batch.shape != batch_shape:
            for slot in range(n_slots):
                _check_observation(observations[slot], obs_shape, "step", env_id,
                                   lambda slot=slot: where(slot))
        record.add_observations(obs_batch, active, slot_sequence, slot_episode, slot_t)
        try:
            actions, log_probs = actor.act(obs_batch, prev_actions, prev_rewards, prev_dones)
        except Exception as error:
            cause = bad_observation()
            if cause is not None:
                raise cause from error
            raise
        record.add_actions(actions, log_probs)
        # Cleared for every slot; set below where an episode ended and its sequence goes on.
        prev_dones = [0.0] * n_slots
        restarted = []
        finished = []
        for slot in active:
            watch.calls += 1
            watch.call = watch.calls
            try:
                result = steps[slot](actions[slot])
            except EnvTimeout:
                raise _timed_out(env_id, "step", where(slot)) from None
            except Exception as error:  # re-raised with the env, task and step named
                cause = bad_observation()
                if cause is not None:
                    raise cause from error
                raise EnvStepError(
                    f"env {env_id!r} raised on task {_describe(task)} at step "
                    f"{slot_t[slot]} of episode {slot_episode[slot]}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            finally:
                watch.call = 0
            try:
                obs, reward, terminated, truncated, info = result
            except (TypeError, ValueError):
                raise EnvStepError(
                    f"env {env_id!r} returned {_short(result)} from step {where(slot)}; "
                    f"expected (observation, reward, terminated, truncated, info)"
                ) from None
            try:
                if type(reward) is str:
                    raise TypeError
                reward = float(reward)
            except (TypeError, ValueError):
                raise EnvStepError(
                    f"env {env_id!r} returned reward {_short(reward)} "
                    f"({type(reward).__name__}) from step {where(slot)}; expected a finite "
                    f"number"
                ) from None
            if not isfinite(reward):
                # A non-finite observation fed to the policy earlier, or returned now, is
                # the likelier cause: name it rather than the reward it led to.
                observations[slot] = obs
                cause = bad_observation()
                if cause is None and not np.isfinite(np.asarray(obs, dtype=np.float64)).all():
                    cause = _non_finite("observation", obs, env_id, task, slot_t[slot] + 1)
                raise cause or _non_finite("reward", reward, env_id, task, slot_t[slot])
            add_reward(reward)
            prev_rewards[slot] = reward
            if info and "success" in info:
                saw_success = True
                j, episode = slot_sequence[slot], slot_episode[slot]
                successes[j, episode] = max(successes[j, episode], float(info["success"]))
            if not (terminated or truncated):
                add_end(_RUNNING)
                slot_t[slot] += 1
                observations[slot] = obs
                continue
            add_end(_TERMINATED if terminated else _TRUNCATED)
            episode = slot_episode[slot] + 1
            slot_episode[slot] = episode
            slot_t[slot] = 0
            if episode < episodes_per_sequence:
                # Same sequence, next episode: the recurrent state carries over, and so does
                # the done flag (a new sequence starts with it cleared).
                prev_dones[slot] = 1.0
                observations[slot] = reset(slot, None)
            elif next_sequence < num_sequences:
                start(slot)
                restarted.append(slot)
            else:
                prev_dones[slot] = 1.0
                finished.append(slot)
        if finished:
            active = [slot for slot in active if slot not in finished]
        # The previous action of every slot is the one just taken; a new sequence starts at 0
        # (on a copy: the record keeps `actions`).
        prev_actions = actions
        if restarted:
            prev_actions = actions.copy()
            prev_actions[restarted] = 0
            actor.start_sequences(np.asarray(restarted))

    arrays = record.scatter(num_sequences, prev_actions.dtype)
    # The scattered observations are exactly those the locator walks (stepping slots only).
    if not np.isfinite(arrays["observations"]).all() and (cause := bad_observation()):
        raise cause
    return Rollout(**arrays, task=task, seed=seed, weights_version=weights_version,
                   successes=successes if saw_success else None)


# How a step ended, one small int per real env step.
_RUNNING, _TRUNCATED, _TERMINATED = 0, 1, 2


class _StepRecord:
    """What `sample_rollout` saw. Per batch step: the observation, action and log-probability
    of every slot, which slots stepped, and each slot's (sequence, episode, step) at that
    moment. Per real env step, in the order taken (batch step, then slot): reward and ending."""

    def __init__(self, n_slots: int) -> None:
        self.n_slots = n_slots
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.log_probs: list[np.ndarray] = []
        self.stepping: list[list[int]] = []
        self.sequences: list[list[int]] = []
        self.episodes: list[list[int]] = []
        self.timesteps: list[list[int]] = []
        self.rewards: list[float] = []
        self.ends: list[int] = []

    def add_observations(
        self,
        observations: np.ndarray,
        stepping: list[int],
        sequences: list[int],
        episodes: list[int],
        timesteps: list[int],
    ) -> None:
        """A batch step's inputs, before the actor sees them; `stepping` is kept as given (the
        sampler never mutates it), the per-slot lists are copied because the sampler updates
        them in place."""
        self.observations.append(observations)
        self.stepping.append(stepping)
        self.sequences.append(sequences[:])
        self.episodes.append(episodes[:])
        self.timesteps.append(timesteps[:])

    def add_actions(self, actions: np.ndarray, log_probs: np.ndarray) -> None:
        """The actor's answer to the latest `add_observations`."""
        self.actions.append(actions)
        self.log_probs.append(log_probs)

    def first_non_finite_observation(self) -> tuple[int, np.ndarray] | None:
        """(step in its episode, observation) of the first non-finite observation a stepping
        slot fed to the actor, in the order fed; None if all were finite. A slot that is not
        stepping only repeats an observation it fed before, so it is skipped."""
        for batch, stepping, timesteps in zip(
            self.observations, self.stepping, self.timesteps, strict=True
        ):
            for slot in stepping:
                if not np.isfinite(batch[slot]).all():
                    return timesteps[slot], batch[slot]
        return None

    def scatter(self, num_sequences: int, action_dtype: Any) -> dict[str, np.ndarray]:
        """The `Rollout` arrays: the steps scattered into time-major [T, N] arrays, padded with
        `mask == 0`."""
        counts = [len(slots) for slots in self.stepping]
        total = sum(counts)
        slots = np.fromiter(itertools.chain.from_iterable(self.stepping), np.int64, total)
        # Row of each real step in the [batch steps × slots] arrays, in the order taken.
        rows = np.repeat(np.arange(len(counts), dtype=np.int64) * self.n_slots, counts) + slots
        sequences = np.asarray(self.sequences, dtype=np.int64).reshape(-1)[rows]
        episodes = np.asarray(self.episodes, dtype=np.int64).reshape(-1)[rows]
        timesteps = np.asarray(self.timesteps, dtype=np.int64).reshape(-1)[rows]
        ends = np.asarray(self.ends, dtype=np.int8)
        # A step's time index is how many earlier steps its sequence has: rank within the
        # sequence in a stable sort by sequence, since steps were recorded in time order.
        order = np.argsort(sequences, kind="stable")
        lengths = np.bincount(sequences, minlength=num_sequences)
        firsts = np.cumsum(lengths) - lengths
        position = np.empty_like(rows)
        position[order] = np.arange(total) - np.repeat(firsts, lengths)
        horizon = int(lengths.max())
        where = (position, sequences)

        def place(values: Any, dtype: Any, trailing: tuple[int, ...] = ()) -> np.ndarray:
            out = np.zeros((horizon, num_sequences, *trailing), dtype=dtype)
            out[where] = values
            return out

        def batch_rows(batches: list[np.ndarray], dtype: Any) -> np.ndarray:
            stacked = np.concatenate(batches).astype(dtype, copy=False)
            return place(stacked[rows], dtype, stacked.shape[1:])

        episode_index = place(episodes, np.int64)
        mask = place(1.0, np.float32)
        # Padding continues each sequence's last episode index so per-episode sums stay right.
        last_episode = episodes[order[firsts + lengths - 1]]
        episode_index = np.where(mask > 0, episode_index, last_episode[None, :])
        return {
            "observations": batch_rows(self.observations, np.float32),
            "actions": batch_rows(self.actions, action_dtype),
            "rewards": place(self.rewards, np.float32),
            "dones": place(ends > _RUNNING, bool),
            "terminated": place(ends == _TERMINATED, bool),
            "mask": mask,
            "log_probs": batch_rows(self.log_probs, np.float32),
            "timesteps": place(timesteps, np.int64),
            "episode_index": episode_index,
        }
