"""A rollout worker: a batch of task envs, a CPU copy of the algorithm and a weights client.

Plain class; `ray.remote` is applied where the runtime is wired (`rlmeta.distributed.ray_runtime`),
and `LocalRuntime` calls the same `sample_tasks` helper, so local and distributed sampling of one
chunk of tasks give the same episodes.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmeta.algorithm import Algorithm, TaskResult, TaskSpec, Weights
from rlmeta.distributed.errors import TaskFailure
from rlmeta.distributed.parameter_server import ParameterServer
from rlmeta.rollout import EnvStepError, env_call_timeout, set_task_on

# A worker asked for a version its parameter server has not got yet waits this long, then fails.
WEIGHTS_WAIT_S = 10.0
PULL_INTERVAL_S = 0.01


def _identity(handle: Any) -> Any:
    return handle


class WeightsClient:
    """Loads published weights into an algorithm, fetching only when the version grew.

    `pull` asks the parameter server for its (version, handle); `fetch` turns a handle into
    weights (`ray.get` under Ray); a handle for a version the client already has, or an older
    one, is never fetched. Version `None` marks one-off weights (an evaluation of a checkpoint):
    always loaded, and the next published version is fetched again.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        fetch: Callable[[Any], Weights] = _identity,
        server: ParameterServer | None = None,
        wait_s: float = WEIGHTS_WAIT_S,
    ) -> None:
        self.algorithm = algorithm
        self.fetch = fetch
        self.server = server
        self.wait_s = wait_s
        self.version = -1
        self.fetches = 0

    def update(self, version: int | None, handle: Any) -> None:
        if version is not None and version <= self.version:
            return
        self.algorithm.set_weights(self.fetch(handle))
        self.version = -1 if version is None else version
        self.fetches += 1

    def pull(self, min_version: int) -> int:
        """Load the newest published weights, at least `min_version`; returns the version held.

        The driver passes the newest version it knows of (sync mode: exactly the iteration's),
        so a server that has not yet seen it is waited for rather than sampled with stale
        weights, and a client that already holds it does not ask: a round trip to the server
        process per task costs ~10% of a busy worker's throughput on a machine with no idle core
        (benchmarks/results/sampler_notes.md).
        """
        if self.version >= min_version:
            return self.version
        if self.server is None:
            raise RuntimeError("this weights client has no parameter server to pull from")
        deadline = time.monotonic() + self.wait_s
        version, handle = self.server.latest()
        while version < min_version:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the parameter server still has weights version {version} after "
                    f"{self.wait_s:g}s; this task needs version {min_version} or newer"
                )
            time.sleep(PULL_INTERVAL_S)
            version, handle = self.server.latest()
        self.update(version, handle)
        return self.version


def run_seeded(fn: Callable[[], Any], seed: int) -> Any:
    """Call `fn` with torch's and numpy's global RNGs seeded by `seed`, then restore them.

    Each task carries its own seed, so what it samples does not depend on which process ran it
    or what ran there before; restoring keeps the learner's RNG stream independent of sampling
    when both share a process (LocalRuntime).
    """
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            return fn()
    finally:
        np.random.set_state(numpy_state)


def sample_task(
    algorithm: Algorithm,
    envs: list[gym.Env],
    spec: TaskSpec,
    version: int,
    env_timeout_s: float | None = None,
) -> TaskResult | TaskFailure:
    """Sample one task; an env error (an env call running past `env_timeout_s` included) comes
    back as a `TaskFailure` carrying its message."""
    try:
        with env_call_timeout(env_timeout_s):
            set_task_on(envs, spec.task, spec.index)
            return run_seeded(lambda: algorithm.run_task(envs, spec, version), spec.seed)
    except EnvStepError as error:
        return TaskFailure(spec.index, spec.seed, str(error))


def sample_tasks(
    algorithm: Algorithm,
    envs: list[gym.Env],
    specs: list[TaskSpec],
    version: int,
    env_timeout_s: float | None = None,
) -> list[TaskResult | TaskFailure]:
    """Sample one chunk of specs; one outcome per spec, in order.

    With several specs and an algorithm that has `run_tasks` they are sampled together, seeded
    by the first spec's seed; otherwise each spec is sampled on its own as by `sample_task`.
    Specs sampled together share one env batch, so an env error (or a task an env rejects) in
    any of them fails every spec of the chunk with the same message.
    """
    run_tasks = getattr(algorithm, "run_tasks", None)
    if len(specs) == 1 or run_tasks is None:
        return [sample_task(algorithm, envs, spec, version, env_timeout_s) for spec in specs]
    try:
        with env_call_timeout(env_timeout_s):
            results = run_seeded(lambda: run_tasks(envs, specs, version), specs[0].seed)
    except EnvStepError as error:
        indices = [spec.index for spec in specs]
        message = f"{error} [tasks {indices} were sampled together; all of them fail]"
        return [TaskFailure(spec.index, spec.seed, message) for spec in specs]
    if [r.index for r in results] != [spec.index for spec in specs]:
        raise RuntimeError(
            f"{type(algorithm).__name__}.run_tasks returned results for tasks "
            f"{[r.index for r in results]}; expected {[spec.index for spec in specs]} in order"
        )
    return results


def evaluate_task(
    algorithm: Algorithm,
    envs: list[gym.Env],
    spec: TaskSpec,
    adapt_steps: int,
    env_timeout_s: float | None = None,
) -> dict[str, float] | TaskFailure:
    """Fast-adaptation evaluation of one task, seeded like sampling; env errors as failures."""
    try:
        with env_call_timeout(env_timeout_s):
            set_task_on(envs, spec.task, spec.index)
            return run_seeded(lambda: algorithm.evaluate_task(envs, spec, adapt_steps),
                              spec.seed)
    except EnvStepError as error:
        return TaskFailure(spec.index, spec.seed, str(error))


def build_envs(env_factory: Callable[[], gym.Env], count: int) -> list[gym.Env]:
    if count < 1:
        raise ValueError(f"envs_per_worker must be >= 1, got {count}")
    return [env_factory() for _ in range(count)]


class RolloutWorker:
    """Samples tasks with `envs_per_worker` envs stepped together and a CPU algorithm copy,
    pulling weights from `server` (a client of the parameter server actor under Ray).

    A worker whose envs cannot be built does not raise from its constructor (an actor that fails
    there is restarted forever); it answers every task with a fatal `TaskFailure` saying why.
    An env call that runs longer than `env_timeout_s` fails its task like any env error.
    """

    def __init__(
        self,
        algorithm_factory: Callable[[str], Algorithm],
        env_factory: Callable[[], gym.Env],
        envs_per_worker: int,
        server: ParameterServer,
        fetch: Callable[[Any], Weights] = _identity,
        env_timeout_s: float | None = None,
    ) -> None:
        self.env_timeout_s = env_timeout_s
        # Workers share the machine with each other; one thread each avoids oversubscription.
        torch.set_num_threads(1)
        self.envs: list[gym.Env] = []
        self.build_error: str | None = None
        try:
            self.envs = build_envs(env_factory, envs_per_worker)
        except Exception as error:
            last = traceback.extract_tb(error.__traceback__)[-1]
            self.build_error = (
                f"worker could not build its envs with {env_factory!r}: "
                f"{type(error).__name__}: {error} (at {last.filename}:{last.lineno})"
            )
        self.algorithm = algorithm_factory("cpu")
        self.weights = WeightsClient(self.algorithm, fetch, server)

    def run(self, specs: list[TaskSpec], min_version: int) -> list[TaskResult | TaskFailure]:
        """Sample a chunk of specs (see `sample_tasks`) with the newest published weights, at
        least `min_version`; one outcome per spec, in order."""
        if self.build_error is not None:
            return [TaskFailure(s.index, s.seed, self.build_error, fatal=True) for s in specs]
        version = self.weights.pull(min_version)
        return sample_tasks(self.algorithm, self.envs, specs, version, self.env_timeout_s)

    def evaluate(
        self, spec: TaskSpec, adapt_steps: int, min_version: int, weights_handle: Any = None
    ) -> dict[str, float] | TaskFailure:
        """`algorithm.evaluate_task` on `spec` with the newest published weights (at least
        `min_version`), or with the one-off weights behind `weights_handle` when given."""
        if self.build_error is not None:
            return TaskFailure(spec.index, spec.seed, self.build_error, fatal=True)
        if weights_handle is None:
            self.weights.pull(min_version)
        else:
            self.weights.update(None, weights_handle)
        return evaluate_task(self.algorithm, self.envs, spec, adapt_steps, self.env_timeout_s)

    def ready(self) -> bool:
        """Answers once the worker (or its restarted replacement) is up."""
        return True

    def weights_fetches(self) -> int:
        """How many times this worker fetched weights (a version it lacked, or one-off ones)."""
        return self.weights.fetches

    def reset_weights(self) -> None:
        """Forget the loaded version, so the next one published is fetched even if not newer
        (after a checkpoint is restored at an earlier version)."""
        self.weights.version = -1

    def sync_weights(self, min_version: int) -> int:
        """Load the newest weights ahead of any task (used to time a broadcast)."""
        return self.weights.pull(min_version)
