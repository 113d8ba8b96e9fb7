"""The Ray runtime: rollout worker actors, a learner actor (or a group of them, `learners`), a
parameter server actor and the driver-side scheduler.

A meta-batch is cut into calls of up to `tasks_per_call` specs in submission order
(`runtime.chunk_specs`; RL² samples several tasks per call). Calls wait in one queue and go to
whichever worker has room (`TASKS_PER_WORKER` calls in flight each, so a worker never idles
while the driver handles its last result). The learner puts each weights
version in the object store once and publishes (version, [ObjectRef]) to the parameter server;
the ref is wrapped in a list so Ray hands it over unresolved. A dispatch carries only the newest
version the driver knows of; a worker that holds it samples at once, one that does not asks the
parameter server for the newest and fetches only versions it lacks. A call whose worker died is
queued again whole with the same seeds, up to `max_task_retries` times. Evaluation sends one
spec per call.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import ray
import ray._private.ray_constants
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    RayError,
    RayTaskError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlmeta.algorithm import Algorithm, TaskResult, TaskSpec, Weights
from rlmeta.config import ExperimentConfig
from rlmeta.distributed import runtime as rt
from rlmeta.distributed.errors import RayAddressError, RolloutError, TaskFailure
from rlmeta.distributed.learner_group import LearnerGroup
from rlmeta.distributed.parameter_server import ParameterServer
from rlmeta.distributed.placement import learner_placement
from rlmeta.distributed.ray_errors import describe_ray_error
from rlmeta.distributed.worker import RolloutWorker

# Calls (of up to tasks_per_call specs each) in flight per worker.
TASKS_PER_WORKER = 2
# Calls sent to a restarting actor fail at once; wait this long between readiness probes.
PROBE_INTERVAL_S = 0.1
# Ray restarts a dead worker actor as often as needed; what bounds a run that keeps losing
# workers is max_task_retries per task.
WORKER_MAX_RESTARTS = -1
# Task results and arguments up to this size travel inline over gRPC between the worker and the
# driver (or learner) instead of through the node's shared-memory object store. Ray's default is
# 100 KiB; one task's rollouts are a few hundred KiB, and each store round trip (create, seal,
# fetch, free through the raylet) wakes processes that, with no idle core, preempt the workers.
# Inline: 2 workers x 10 HalfCheetahVel envs sample 5% more steps/s (benchmarks/results/
# sampler_notes.md). Bigger objects, such as weights of large models, still use the store.
INLINE_OBJECT_BYTES = 4 * 1024 * 1024
SYSTEM_CONFIG = {"max_direct_call_object_size": INLINE_OBJECT_BYTES}
# A local instance records no metrics, so its per-node Prometheus exporter does not start.
LOCAL_SYSTEM_CONFIG = {**SYSTEM_CONFIG, "enable_metrics_collection": False}
LOOPBACK = "127.0.0.1"
# How long a given Ray address may take to accept a connection before the run stops; Ray itself
# keeps retrying an address that does not answer for minutes.
ADDRESS_TIMEOUT_S = 5.0


def fetch_ref(handle: list[ray.ObjectRef]) -> Weights:
    """Weights client `fetch` under Ray: resolve the wrapped ObjectRef (shared memory per node)."""
    return ray.get(handle[0])


def put_ref(weights: Weights) -> ray.ObjectRef:
    return ray.put(weights)


class ServerClient:
    """The parameter server actor behind the plain `ParameterServer` interface; each call
    waits for its answer, so a learner's publish is visible before its update returns.

    Holds the actor's name, not its handle, and looks the actor up on first use: an actor
    handle in a restartable actor's constructor arguments counts as an object-store argument,
    which a restart would need back (Ray logs an error for it, ray-project/ray#53727); a name
    is plain data.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._actor: ray.actor.ActorHandle | None = None

    @property
    def actor(self) -> ray.actor.ActorHandle:
        if self._actor is None:
            self._actor = ray.get_actor(self.name)
        return self._actor

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "_actor": None}

    def publish(self, version: int, handle: list[ray.ObjectRef]) -> bool:
        return ray.get(self.actor.publish.remote(version, handle))

    def reset(self, version: int, handle: list[ray.ObjectRef]) -> None:
        ray.get(self.actor.reset.remote(version, handle))

    def latest(self) -> tuple[int, list[ray.ObjectRef]]:
        return ray.get(self.actor.latest.remote())


def start_local_ray(num_cpus: int) -> None:
    """Start a new Ray instance on this machine, dashboard off, with the system settings
    rlmeta's workers are measured with (`SYSTEM_CONFIG`), every process listening on the
    loopback interface only and no metrics exporter (`LOCAL_SYSTEM_CONFIG`).

    Ray turns a node address of 127.0.0.1 into the machine's routable address unless it was
    built without cluster support (its rule for macOS and Windows); that rule is applied for the
    duration of this call, so the instance's gRPC servers and agents bind to 127.0.0.1 rather
    than to all interfaces. A cluster started with `ray start` is not affected.
    """
    with _loopback_node():
        ray.init(
            # "local" always starts a new instance; None would join whatever RAY_ADDRESS or
            # the last `ray start` on this machine points at.
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            configure_logging=False,
            _node_ip_address=LOOPBACK,
            # A copy: ray.init adds its own keys (object spilling) to the dict it is given.
            _system_config=dict(LOCAL_SYSTEM_CONFIG),
        )


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    constants = ray._private.ray_constants
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


def check_address(address: str, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Raise `RayAddressError` unless `address` ("host:port" or "ray://host:port") accepts a
    TCP connection within `timeout_s`; "auto" is left to Ray, which fails at once when it finds
    no running cluster."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"Ray address {address!r} must be 'auto', 'host:port' or 'ray://host:port'"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or error)
        raise RayAddressError(
            f"Ray address {address!r} does not answer ({reason}, waited at most "
            f"{timeout_s:g}s); expected a running Ray head there (`ray start --head`), or no "
            f"address to start a local instance"
        ) from None


@contextlib.contextmanager
def _one_line(what: str) -> Iterator[None]:
    try:
        yield
    except RayError as error:
        raise RolloutError(f"{what} failed: {describe_ray_error(error)}") from error


def _get(refs: Any, what: str) -> Any:
    """`ray.get`, with a failure raised as a one-line `RolloutError` naming `what` failed."""
    try:
        return ray.get(refs)
    except RayError as error:
        raise RolloutError(f"{what} failed: {describe_ray_error(error)}") from error


def init_ray(config: ExperimentConfig) -> bool:
    """Connect to Ray; returns True when this call started it (so shutdown stops it).

    An already initialised Ray is reused; no address starts a local instance
    (`start_local_ray`) with a CPU per worker plus `learner_cpus` per learner; "auto" joins a
    running cluster, whose system settings were fixed by `ray start` (cluster.yaml passes the same).
    """
    if ray.is_initialized():
        return False
    if config.address is None:
        start_local_ray(config.workers + config.learners * config.learner_cpus)
    else:
        check_address(config.address)
        ray.init(address=config.address)
    return True


@dataclass
class _Job:
    """One queued or running worker call: a chunk of specs to sample, or one to evaluate."""

    specs: list[TaskSpec]
    handle: rt.SampleHandle
    kind: str = "run"  # run or evaluate
    adapt_steps: int = 0
    weights: list[Any] | None = None  # evaluate with these one-off weights ([ObjectRef])
    attempts: int = 0
    worker: int = -1
    generation: int = 0


@dataclass
class _Pending:
    """A handle's progress: outcomes by task index, and when sampling started."""

    outcomes: dict[int, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    open_jobs: int = 0
    chunks: list[list[TaskSpec]] = field(default_factory=list)  # how the specs were cut


class RayRuntime:
    """`Runtime` over Ray actors. See the module docstring for scheduling and faults."""

    def __init__(
        self,
        config: ExperimentConfig,
        algorithm_factory: Callable[[str], Algorithm],
        env_factory: Callable[[], gym.Env],
        tasks_per_call: int = 1,
    ) -> None:
        if config.workers < 1:
            raise ValueError(f"RayRuntime needs workers >= 1, got {config.workers}")
        self.config = config
        # Specs per worker call (default: from the config, `rlmeta.run.build.tasks_per_call`).
        self.tasks_per_call = rt.check_tasks_per_call(tasks_per_call)
        self._started_ray = init_ray(config)
        self.device, gpus = learner_placement(config.device, ray.cluster_resources())
        self._timings = rt.Timings()
        # No CPU reserved: it answers small calls and must not take a worker's place. It stays
        # on the driver's node, so losing a worker node never loses it.
        driver_node = NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True
        )
        server_name = f"rlmeta-parameter-server-{uuid.uuid4().hex}"
        self.parameter_server = (
            ray.remote(ParameterServer)
            .options(num_cpus=0, scheduling_strategy=driver_node, name=server_name)
            .remote()
        )
        server = self.server = ServerClient(server_name)
        # As many torch threads as reserved CPUs. Ray runs actors at niceness 15, so a learner
        # thread that shares a core with any ordinary busy process gets ~3% of it, and threads
        # that meet at every parallel op all wait for that one: a MAML-TRPO update with 2
        # threads beside one busy process took >10 min instead of 2.8 s (1 thread: 4.7 s either
        # way; benchmarks/results/maml_iteration_time.md).
        self.learners = LearnerGroup(config.learners, algorithm_factory, self.device, put_ref,
                                     server, config.learner_cpus, gpus)
        worker_class = ray.remote(RolloutWorker).options(
            num_cpus=1, max_restarts=WORKER_MAX_RESTARTS, scheduling_strategy="SPREAD"
        )
        self.workers = [
            worker_class.remote(
                algorithm_factory, env_factory, config.envs_per_worker, server, fetch_ref,
                config.env_step_timeout_s,
            )
            for _ in range(config.workers)
        ]
        self._generation = [0] * config.workers
        self._load = [0] * config.workers
        self._state = ["ready"] * config.workers  # ready, recovering or dead
        self._probes: dict[ray.ObjectRef, int] = {}
        self._queue: deque[_Job] = deque()
        self._running: dict[ray.ObjectRef, _Job] = {}
        self._version = 0
        self._timings.add("broadcast_s", self.learners.publish(0))

    @property
    def learner(self) -> ray.actor.ActorHandle:
        """The learner actor of rank 0 (the one that publishes)."""
        return self.learners.actors[0]

    # ---- weights ----------------------------------------------------------------------------

    @property
    def weights_version(self) -> int:
        return self._version

    def get_weights(self) -> Weights:
        with _one_line("the parameter server"):
            return fetch_ref(self.server.latest()[1])

    def broadcast(self) -> float:
        """Make every worker load the newest weights now; returns the seconds it took."""
        start = time.perf_counter()
        _get([worker.sync_weights.remote(self._version) for worker in self.workers],
             "a rollout worker's weights sync")
        return time.perf_counter() - start

    # ---- scheduling -------------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        self._queue.append(job)
        job.handle.pending.open_jobs += 1

    def _dispatch(self) -> None:
        while self._queue:
            ready = [i for i, state in enumerate(self._state) if state == "ready"]
            if not ready and not self._probes:
                raise RolloutError(
                    f"all {len(self.workers)} rollout workers died and cannot be restarted"
                )
            worker = min(ready, key=lambda i: self._load[i], default=None)
            if worker is None or self._load[worker] >= TASKS_PER_WORKER:
                return
            job = self._queue.popleft()
            job.worker, job.generation = worker, self._generation[worker]
            actor = self.workers[worker]
            if job.kind == "run":
                ref = actor.run.remote(job.specs, self._version)
            else:
                (spec,) = job.specs
                ref = actor.evaluate.remote(spec, job.adapt_steps, self._version, job.weights)
            self._load[worker] += 1
            self._running[ref] = job

    def _lost(self, job: _Job, error: RayActorError) -> None:
        """The job's worker died: hold it back until it answers again, count the death once,
        and queue the job again whole, with the same specs and seeds."""
        if job.generation == self._generation[job.worker]:
            self._generation[job.worker] += 1
            self._timings.add("restarted_workers", 1)
            self._probe(job.worker)
        job.attempts += 1
        if job.attempts > self.config.max_task_retries:
            indices = [spec.index for spec in job.specs]
            seeds = [spec.seed for spec in job.specs]
            raise RolloutError(
                f"tasks {indices} (seeds {seeds}) were lost with their worker "
                f"{job.attempts} times, more than max_task_retries={self.config.max_task_retries}: "
                f"{describe_ray_error(error)}"
            )
        job.handle.pending.open_jobs += 1
        self._queue.appendleft(job)

    def _probe(self, worker: int) -> None:
        self._state[worker] = "recovering"
        self._probes[self.workers[worker].ready.remote()] = worker

    def _probed(self, ref: ray.ObjectRef) -> None:
        worker = self._probes.pop(ref)
        try:
            ray.get(ref)
        except ActorUnavailableError:
            time.sleep(PROBE_INTERVAL_S)
            self._probe(worker)
            return
        except ActorDiedError:
            self._state[worker] = "dead"
            return
        self._state[worker] = "ready"

    def _step(self) -> None:
        """Dispatch, wait for one job to finish, and file its outcome under its handle."""
        self._dispatch()
        start = time.perf_counter()
        done, _ = ray.wait([*self._running, *self._probes], num_returns=1)
        self._timings.add("waiting_s", time.perf_counter() - start)
        ref = done[0]
        if ref in self._probes:
            self._probed(ref)
            return
        job = self._running.pop(ref)
        self._load[job.worker] -= 1
        job.handle.pending.open_jobs -= 1
        try:
            outcome = ray.get(ref)
        except RayTaskError as error:
            # The worker is alive and raised: retrying would raise again.
            raise RolloutError(
                f"rollout worker {job.worker} failed on tasks "
                f"{[spec.index for spec in job.specs]}: {describe_ray_error(error)}"
            ) from error
        except RayActorError as error:
            self._lost(job, error)
            return
        if job.kind == "run":
            for spec, one in zip(job.specs, outcome, strict=True):
                job.handle.pending.outcomes[spec.index] = one
        else:
            job.handle.pending.outcomes[job.specs[0].index] = outcome

    def _finish(self, handle: rt.SampleHandle) -> dict[int, Any]:
        pending: _Pending = handle.pending
        while pending.open_jobs:
            self._step()
        return pending.outcomes

    # ---- Runtime ----------------------------------------------------------------------------

    def submit(self, specs: list[TaskSpec]) -> rt.SampleHandle:
        rt.check_specs(specs)
        chunks = rt.chunk_specs(list(specs), self.tasks_per_call)
        handle = rt.SampleHandle(list(specs), self.weights_version, pending=_Pending(chunks=chunks))
        for chunk in chunks:
            self._enqueue(_Job(chunk, handle))
        self._dispatch()
        return handle

    def collect(self, handle: rt.SampleHandle) -> list[TaskResult]:
        if handle.pending is None:
            raise ValueError(f"sample handle {handle.id} was already collected")
        bound = rt.staleness_bound(self.config)
        outcomes = self._finish(handle)
        # Learn may have run since these were sampled: resample the too-old ones, same chunks
        # and seeds.
        for chunk in rt.stale_chunks(handle.pending.chunks, outcomes, self.weights_version, bound):
            self._enqueue(_Job(chunk, handle))
        outcomes = self._finish(handle)
        self._timings.add("sampling_s", time.perf_counter() - handle.pending.started)
        handle.pending = None
        results: dict[int, TaskResult] = {}
        for spec in handle.specs:
            outcome = outcomes[spec.index]
            if isinstance(outcome, TaskFailure):
                rt.handle_failure(outcome, self.config.on_env_error, self._timings)
                continue
            results[spec.index] = outcome
            self._timings.add("env_steps", outcome.env_steps)
        return rt.order_results(results)

    def learn(self, results: list[TaskResult]) -> dict[str, float]:
        version = self.weights_version
        start = time.perf_counter()
        metrics, update_s, put_s = self.learners.update(results, version + 1)
        self._timings.add("learner_s", time.perf_counter() - start)
        self._timings.add("broadcast_s", put_s)
        self._version = version + 1
        return rt.learn_metrics(metrics, results, version)

    def evaluate(
        self, specs: list[TaskSpec], adapt_steps: int, weights: Weights | None = None
    ) -> list[dict[str, float]]:
        rt.check_specs(specs)
        given = [ray.put(weights)] if weights is not None else None
        handle = rt.SampleHandle(list(specs), self.weights_version, pending=_Pending())
        for spec in specs:
            self._enqueue(_Job([spec], handle, "evaluate", adapt_steps, given))
        outcomes = self._finish(handle)
        return [rt.evaluation_metrics(outcomes[spec.index]) for spec in specs]

    def state_dict(self) -> dict:
        return {
            "algorithm": self.learners.state_dict(),
            "weights_version": self.weights_version,
        }

    def load_state_dict(self, state: dict) -> None:
        self.learners.load_state_dict(state["algorithm"])
        # The saved version may be older than what workers hold: start the versions afresh.
        _get([worker.reset_weights.remote() for worker in self.workers], "a rollout worker")
        self._version = int(state["weights_version"])
        put_s = self.learners.publish(self._version, reset=True)
        self._timings.add("broadcast_s", put_s)

    def wait_for_workers(self, timeout_s: float = 120.0) -> int:
        """Block until no worker is still coming back from a restart, or `timeout_s` passes;
        returns how many workers are ready. Sampling never needs this (it sends work to the
        workers that are ready), but a measurement that assumes every worker is up does: on a
        loaded machine a restarted worker can take many seconds to answer."""
        deadline = time.monotonic() + timeout_s
        while self._probes and time.monotonic() < deadline:
            done, _ = ray.wait(list(self._probes), num_returns=1,
                               timeout=max(0.0, deadline - time.monotonic()))
            for ref in done:
                self._probed(ref)
        return sum(state == "ready" for state in self._state)

    def timings(self) -> dict[str, float]:
        return self._timings.pop()

    def shutdown(self) -> None:
        for actor in [*self.workers, *self.learners.actors, self.parameter_server]:
            ray.kill(actor)
        self.workers = []
        if self._started_ray:
            ray.shutdown()
