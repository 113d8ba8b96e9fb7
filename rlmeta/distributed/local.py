"""The single-process runtime: one algorithm object samples and learns, no Ray.

The same `sample_tasks` as the Ray workers, the same envs and the same cut of a meta-batch into
calls, so a seeded run gives the same episodes here as on any number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import torch

from rlmeta.algorithm import Algorithm, TaskResult, TaskSpec, Weights
from rlmeta.config import ExperimentConfig
from rlmeta.distributed import runtime as rt
from rlmeta.distributed.errors import TaskFailure
from rlmeta.distributed.placement import learner_placement
from rlmeta.distributed.worker import build_envs, evaluate_task, sample_tasks


class LocalRuntime:
    """`Runtime` in the driver process. `submit` samples right away with the current weights."""

    def __init__(
        self,
        config: ExperimentConfig,
        algorithm_factory: Callable[[str], Algorithm],
        env_factory: Callable[[], gym.Env],
        tasks_per_call: int = 1,
    ) -> None:
        self.config = config
        # Specs per sampling call, as a Ray worker would take them (default: from the config).
        self.tasks_per_call = rt.check_tasks_per_call(tasks_per_call)
        # This process samples and learns, so it computes with the learner's threads, as the Ray
        # learner does. torch's default of one thread per core oversubscribes cores shared with
        # another run: two runs side by side on 2 cores took 5.4 s per RL² Navigation2D update
        # instead of 1.0 s (docs/cluster.md, "Learner threads").
        torch.set_num_threads(config.learner_cpus)
        device, _ = learner_placement(config.device, {"GPU": float(torch.cuda.device_count())})
        self.device = device
        self.algorithm = algorithm_factory(device)
        self.envs = build_envs(env_factory, config.envs_per_worker)
        self._version = 0
        self._timings = rt.Timings()

    @property
    def weights_version(self) -> int:
        return self._version

    def _sample(self, chunk: list[TaskSpec], outcomes: dict[int, TaskResult | TaskFailure]) -> None:
        start = time.perf_counter()
        outcomes_of_chunk = sample_tasks(self.algorithm, self.envs, chunk, self._version,
                                         self.config.env_step_timeout_s)
        for spec, outcome in zip(chunk, outcomes_of_chunk, strict=True):
            outcomes[spec.index] = outcome
            if isinstance(outcome, TaskResult):
                self._timings.add("env_steps", outcome.env_steps)
        self._timings.add("sampling_s", time.perf_counter() - start)

    def submit(self, specs: list[TaskSpec]) -> rt.SampleHandle:
        rt.check_specs(specs)
        chunks = rt.chunk_specs(list(specs), self.tasks_per_call)
        outcomes: dict[int, TaskResult | TaskFailure] = {}
        for chunk in chunks:
            self._sample(chunk, outcomes)
        return rt.SampleHandle(list(specs), self._version, pending=(chunks, outcomes))

    def collect(self, handle: rt.SampleHandle) -> list[TaskResult]:
        if handle.pending is None:
            raise ValueError(f"sample handle {handle.id} was already collected")
        (chunks, outcomes), handle.pending = handle.pending, None
        # Learn ran since submit: resample with the current weights, same chunks and seeds.
        bound = rt.staleness_bound(self.config)
        for chunk in rt.stale_chunks(chunks, outcomes, self._version, bound):
            self._sample(chunk, outcomes)
        results: dict[int, TaskResult] = {}
        for spec in handle.specs:
            outcome = outcomes[spec.index]
            if isinstance(outcome, TaskFailure):
                rt.handle_failure(outcome, self.config.on_env_error, self._timings)
                continue
            results[spec.index] = outcome
        return rt.order_results(results)

    def learn(self, results: list[TaskResult]) -> dict[str, float]:
        start = time.perf_counter()
        metrics = self.algorithm.update(results)
        self._timings.add("learner_s", time.perf_counter() - start)
        out = rt.learn_metrics(metrics, results, self._version)
        self._version += 1
        return out

    def evaluate(
        self, specs: list[TaskSpec], adapt_steps: int, weights: Weights | None = None
    ) -> list[dict[str, float]]:
        rt.check_specs(specs)
        saved = self.algorithm.get_weights() if weights is not None else None
        try:
            if weights is not None:
                self.algorithm.set_weights(weights)
            timeout = self.config.env_step_timeout_s
            outcomes = [evaluate_task(self.algorithm, self.envs, s, adapt_steps, timeout)
                        for s in specs]
            return [rt.evaluation_metrics(outcome) for outcome in outcomes]
        finally:
            if saved is not None:
                self.algorithm.set_weights(saved)

    def get_weights(self) -> Weights:
        return self.algorithm.get_weights()

    def state_dict(self) -> dict:
        return {"algorithm": self.algorithm.state_dict(), "weights_version": self._version}

    def load_state_dict(self, state: dict) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self._version = int(state["weights_version"])

    def timings(self) -> dict[str, float]:
        return self._timings.pop()

    def shutdown(self) -> None:
        for env in self.envs:
            env.close()
