"""A data-parallel group of learner actors sharing each update (`learners: L`).

Each learner holds a replica of the algorithm and is given the whole meta-batch's results (one
object in Ray's object store, read by reference); the algorithm takes its share of the work by
rank (a consecutive shard of the tasks for MAML; for RL², each minibatch's trials, or one side
of the policy) and sums the shares of losses, gradients, Fisher-vector products and statistics
with `torch.distributed` collectives (`rlmeta.collectives.TorchDistributed`), so every replica
takes the same step. The process group
is set up on the actors as Ray Train's `TorchConfig` backend does it: rank 0 picks a free port on
its node and every actor calls `init_process_group` with `tcp://ADDR:PORT` and its rank (gloo on
CPU, NCCL on GPUs). Rank 0 alone publishes each weights version to the parameter server; the
driver reads checkpoints from it. One learner (`learners: 1`) is exactly today's learner: no
process group, no collective.

A learner that dies stops the run with a one-line `LearnerError` naming it. Learners are not
restarted: the others are blocked in a collective the dead one will never join, and the
optimiser state of a replacement would differ. The checkpoints written so far are untouched, and
`rlmeta resume` continues from the newest.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import ray
import torch.distributed as dist
from ray.exceptions import RayActorError, RayError, RayTaskError

from rlmeta.algorithm import Algorithm, TaskResult, Weights
from rlmeta.collectives import TorchDistributed
from rlmeta.distributed.errors import LearnerError
from rlmeta.distributed.learner import Learner
from rlmeta.distributed.parameter_server import ParameterServer
from rlmeta.distributed.ray_errors import describe_ray_error

# A collective waits this long for a learner that does not arrive (Ray Train's default); a dead
# learner is noticed by the driver long before.
COLLECTIVE_TIMEOUT_S = 1800


def free_address() -> tuple[str, int]:
    """This node's address and a port free on it (Ray Train's `get_address_and_port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return ray.util.get_node_ip_address(), port


class GroupLearner(Learner):
    """A `Learner` that can join a `torch.distributed` process group as one rank of several."""

    def address(self) -> tuple[str, int]:
        return free_address()

    def join(self, init_method: str, rank: int, world_size: int, backend: str) -> None:
        """Join the group and give the algorithm its collective (`set_collective`)."""
        set_collective = getattr(self.algorithm, "set_collective", None)
        if set_collective is None:
            raise TypeError(
                f"{type(self.algorithm).__name__} cannot share an update between learners (it "
                "has no set_collective); use learners: 1"
            )
        dist.init_process_group(
            backend=backend, init_method=init_method, rank=rank, world_size=world_size,
            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        )
        set_collective(TorchDistributed())


def check_gpus(learners: int, gpus_per_learner: float, resources: Mapping[str, float]) -> None:
    """A GPU per learner where the learners take GPUs: fewer would leave some never placed."""
    available = float(resources.get("GPU", 0.0))
    if gpus_per_learner and available < learners * gpus_per_learner:
        raise RuntimeError(
            f"learners: {learners} take a GPU each but the cluster has {available:g}; "
            f"use learners: {int(available)} or fewer, or device: cpu"
        )


class LearnerGroup:
    """`learners` learner actors behind the interface of one (`update`, `publish`, state)."""

    def __init__(
        self,
        learners: int,
        algorithm_factory: Callable[[str], Algorithm],
        device: str,
        put: Callable[[Weights], Any],
        server: ParameterServer,
        cpus: int,
        gpus: float,
    ) -> None:
        if learners < 1:
            raise ValueError(f"learners must be >= 1, got {learners}")
        check_gpus(learners, gpus, ray.cluster_resources())
        self.size = learners
        actor = ray.remote(GroupLearner).options(num_cpus=cpus, num_gpus=gpus)
        # As many torch threads as reserved CPUs (see RayRuntime for why no more).
        self.actors = [
            actor.remote(algorithm_factory, device, put, server, cpus, publishes=rank == 0)
            for rank in range(learners)
        ]
        if learners > 1:
            host, port = self._get([self.actors[0].address.remote()], "joining the group")[0]
            backend = "nccl" if device == "cuda" else "gloo"
            self._get([
                learner.join.remote(f"tcp://{host}:{port}", rank, learners, backend)
                for rank, learner in enumerate(self.actors)
            ], "joining the group")

    def _get(self, refs: list[ray.ObjectRef], doing: str) -> list[Any]:
        """Results of one call per learner, in rank order; the first learner to die stops the
        run at once (the others may be waiting for it in a collective)."""
        rank_of = {ref: rank for rank, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except RayError as error:
                rank = rank_of[done[0]]
                # The actor itself gone, or an error raised inside it (a parameter server lost).
                died = isinstance(error, RayActorError) and not isinstance(error, RayTaskError)
                raise LearnerError(
                    f"learner {rank} of {self.size} {'died' if died else 'failed'} while "
                    f"{doing}; the run stopped with its last checkpoint intact (`rlmeta resume "
                    f"RUN_DIR` continues it): {describe_ray_error(error)}"
                ) from None
        return ray.get(list(refs))

    def update(
        self, results: list[TaskResult], version: int
    ) -> tuple[dict[str, float], float, float]:
        """One update on the results, shared by the learners; rank 0 publishes `version`.
        Returns rank 0's (metrics, update seconds, put seconds)."""
        if len(results) < self.size:
            raise LearnerError(
                f"{len(results)} task results cannot be shared by {self.size} learners (one "
                "task each at least); raise the meta-batch size or lower learners"
            )
        # Stored once and passed by reference: every learner reads the same copy (what it
        # takes of it is the algorithm's choice), and the driver serialises it once, not per
        # learner.
        ordered = ray.put(sorted(results, key=lambda result: result.index))
        refs = [learner.update.remote(ordered, version) for learner in self.actors]
        return self._get(refs, f"updating to weights version {version}")[0]

    def publish(self, version: int, reset: bool = False) -> float:
        return self._get([self.actors[0].publish.remote(version, reset=reset)],
                         f"publishing weights version {version}")[0]

    def state_dict(self) -> dict[str, Any]:
        """Rank 0's algorithm state: every replica holds the same."""
        return self._get([self.actors[0].state_dict.remote()], "saving a checkpoint")[0]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._get([learner.load_state_dict.remote(state) for learner in self.actors],
                  "loading a checkpoint")

    def kill(self) -> None:
        for learner in self.actors:
            ray.kill(learner)
