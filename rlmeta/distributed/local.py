"""The single-process runtime: one algorithm object samples and learns, no Ray.

The same `sample_task` as the Ray workers and the same number of envs per task, so a seeded run
gives the same episodes here as on any number of workers.
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
from rlmeta.distributed.worker import build_envs, evaluate_task, sample_task


class LocalRuntime:
    """`Runtime` in the driver process. `submit` samples right away with the current weights."""

    def __init__(
        self,
        config: ExperimentConfig,
        algorithm_factory: Callable[[str], Algorithm],
        env_factory: Callable[[], gym.Env],
    ) -> None:
        rt.check_runtime_config(config)
        self.config = config
        device, _ = learner_placement(config.device, {"GPU": float(torch.cuda.device_count())})
        self.device = device
        self.algorithm = algorithm_factory(device)
        self.envs = build_envs(env_factory, config.envs_per_worker)
        self._version = 0
        self._timings = rt.Timings()

    @property
    def weights_version(self) -> int:
        return self._version

    def _sample(self, spec: TaskSpec) -> TaskResult | TaskFailure:
        start = time.perf_counter()
        outcome = sample_task(self.algorithm, self.envs, spec, self._version)
        self._timings.add("sampling_s", time.perf_counter() - start)
        if isinstance(outcome, TaskResult):
            self._timings.add("env_steps", outcome.env_steps)
        return outcome

    def submit(self, specs: list[TaskSpec]) -> rt.SampleHandle:
        rt.check_specs(specs)
        outcomes = {spec.index: self._sample(spec) for spec in specs}
        return rt.SampleHandle(list(specs), self._version, pending=outcomes)

    def collect(self, handle: rt.SampleHandle) -> list[TaskResult]:
        if handle.pending is None:
            raise ValueError(f"sample handle {handle.id} was already collected")
        outcomes, handle.pending = handle.pending, None
        bound = rt.staleness_bound(self.config)
        results: dict[int, TaskResult] = {}
        for spec in handle.specs:
            outcome = outcomes[spec.index]
            # Learn ran since submit: resample with the current weights, same seed.
            if isinstance(outcome, TaskResult) and rt.is_stale(outcome, self._version, bound):
                outcome = self._sample(spec)
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
            outcomes = [evaluate_task(self.algorithm, self.envs, s, adapt_steps) for s in specs]
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
