"""MAML-RL (Finn et al. 2017) behind the `rlmeta.algorithm.Algorithm` contract.

Worker side (`run_task`, `evaluate_task`): sample with θ, take inner steps locally, sample with
θ'. Learner side (`update`): rebuild the inner loop differentiably from the stored episodes and
take one outer step with TRPO, PPO (ProMP-style) or Reptile. In a learner group each learner
takes consecutive tasks of the meta-batch and sums its shares of the meta-gradient, the Fisher
products, the line search's loss and KL, and the logged entropy (`set_collective`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.collectives import (
    Collective,
    is_group,
    shard_bounds,
    sum_floats,
    sum_tensor,
    sum_with_floats,
)
from rlmeta.config import ExperimentConfig
from rlmeta.device import resolve_device
from rlmeta.losses import masked_mean
from rlmeta.maml.batch import to_batch
from rlmeta.maml.config import MAMLConfig
from rlmeta.maml.inner import StepSize, check_finite, inner_step
from rlmeta.maml.meta import MetaOutput, TaskBatches, adapted_fisher_product, meta_objective
from rlmeta.maml.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    flat,
    hessian_vector_product,
    unflat,
)
from rlmeta.policies import FeedForwardActor, Params, make_policy
from rlmeta.rollout import Rollout, sample_rollout

POLICY_PREFIX = "policy/"
STEP_SIZE_PREFIX = "inner_lr/"
_TRAIN, EVAL = 0, 1
DEFAULT_ADAPT_STEPS = 3  # the paper's curves: 0..3 gradient steps


def stage_seed(seed: int, purpose: int, stage: int) -> int:
    """A distinct env-reset seed for each sampling stage of a task (a hash, so the seeds of
    neighbouring task seeds do not overlap)."""
    return int(np.random.SeedSequence([seed, purpose, stage]).generate_state(1)[0] % 2**31)


def _stepped(old: list[Tensor], step: list[Tensor], fraction: float) -> list[Tensor]:
    return [o - fraction * s for o, s in zip(old, step, strict=True)]


class MAMLAlgorithm:
    """MAML-RL with a fixed or learned (Meta-SGD) inner step size and a TRPO/PPO/Reptile outer
    loop. All learner math runs on `device`; sampling always runs on CPU."""

    config_section: ClassVar[str] = "maml"
    settings_model: ClassVar[type[MAMLConfig]] = MAMLConfig
    evaluation_axis: ClassVar[str] = "inner gradient steps"

    @classmethod
    def meta_batch_size(cls, config: ExperimentConfig) -> int:
        return config.maml.meta_batch_size

    @classmethod
    def best_metric(cls, config: ExperimentConfig) -> str:
        """The return after the trained number of inner steps."""
        return f"return/step_{config.maml.inner_steps}"

    @classmethod
    def progress_keys(cls, config: ExperimentConfig) -> tuple[str, ...]:
        return ("return/step_0", cls.best_metric(config))

    @classmethod
    def tasks_per_call(cls, config: ExperimentConfig) -> int:
        return 1

    @classmethod
    def default_adapt_steps(cls, config: ExperimentConfig) -> int:
        """`maml.eval_steps`, else the paper's 0..3 inner steps, or more if trained with more."""
        if config.maml.eval_steps is not None:
            return config.maml.eval_steps
        return max(DEFAULT_ADAPT_STEPS, config.maml.inner_steps)

    @classmethod
    def with_eval_actions(cls, config: ExperimentConfig, actions: str) -> ExperimentConfig:
        raise ValueError(f"actions applies to RL² runs; this run's algorithm is "
                         f"{config.algorithm!r}, whose evaluation samples (MAML adapts on "
                         f"sampled episodes)")

    def __init__(
        self,
        config: ExperimentConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: str = "cpu",
    ):
        self.config = config
        self.maml = config.maml
        self.action_space = action_space
        self.device = torch.device(resolve_device(device))
        # Same initial weights in every process built from the same config.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.policy = make_policy(observation_space, action_space, config.policy)
        self.policy.to(self.device)
        self.step_sizes: dict[str, Tensor] = {}
        if self.maml.learn_inner_lr:
            self.step_sizes = {
                name: torch.full_like(p, self.maml.inner_lr).requires_grad_(True)
                for name, p in self.policy.named_parameters()
            }
        self.optimizer: torch.optim.Optimizer | None = None
        if self.maml.outer == "ppo":
            self.optimizer = torch.optim.Adam(
                list(self._meta_parameters().values()), lr=self.maml.outer_lr
            )
        self.updates = 0
        self.trpo_rejections = 0
        # A learner group's sums (None: one learner on the whole meta-batch, as arithmetic
        # without any collective), and the meta-batch's task count while an update runs.
        self.collective: Collective | None = None
        self._task_count: int | None = None

    # ----- parameters -------------------------------------------------------------------

    def _meta_parameters(self) -> dict[str, Tensor]:
        """Everything the outer loop optimises, by weight name (policy, then learned step sizes)."""
        meta = {POLICY_PREFIX + n: p for n, p in self.policy.named_parameters()}
        meta.update({STEP_SIZE_PREFIX + n: t for n, t in self.step_sizes.items()})
        return meta

    def _policy_params(self) -> Params:
        return dict(self.policy.named_parameters())

    def set_collective(self, collective: Collective) -> None:
        self.collective = collective

    def _total(self, tensor: Tensor) -> Tensor:
        """`tensor` summed over the learner group (itself for one learner)."""
        return sum_tensor(self.collective, tensor) if is_group(self.collective) else tensor

    def _floats(self, *values: Tensor | float) -> list[float]:
        """Scalars summed over the learner group (themselves for one learner)."""
        if is_group(self.collective):
            return sum_floats(self.collective, *values)
        return [float(value) for value in values]

    def _total_with(self, vector: Tensor, *scalars: Tensor | float) -> tuple[Tensor, list[float]]:
        """`vector` and scalars summed over the learner group in one collective."""
        if is_group(self.collective):
            return sum_with_floats(self.collective, vector, *scalars)
        return vector, [float(value) for value in scalars]

    def _tasks_in_batch(self, tasks: list[TaskBatches]) -> int:
        """The meta-batch's task count (this learner holds `tasks`, a shard of it in a group)."""
        return len(tasks) if self._task_count is None else self._task_count

    def _step_size(self) -> StepSize:
        return self.step_sizes if self.step_sizes else self.maml.inner_lr

    def get_weights(self) -> Weights:
        return {name: t.detach().cpu().clone() for name, t in self._meta_parameters().items()}

    def set_weights(self, weights: Weights) -> None:
        meta = self._meta_parameters()
        if set(weights) != set(meta):
            missing, extra = sorted(set(meta) - set(weights)), sorted(set(weights) - set(meta))
            raise KeyError(
                f"weights do not match this MAML policy: missing {missing}, unexpected {extra}"
            )
        for name, target in meta.items():
            value = weights[name]
            if value.shape != target.shape:
                raise ValueError(
                    f"weight {name!r} has shape {tuple(value.shape)}; "
                    f"expected {tuple(target.shape)}"
                )
            check_finite(f"weight {name!r}", value)
        with torch.no_grad():
            for name, target in meta.items():
                target.copy_(weights[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.get_weights(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "updates": self.updates,
            "trpo_rejections": self.trpo_rejections,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"weights", "optimizer", "updates", "trpo_rejections"} - set(state)
        if missing:
            raise KeyError(f"MAML state is missing {sorted(missing)}")
        self.set_weights(state["weights"])
        if self.optimizer is not None:
            if state["optimizer"] is None:
                raise ValueError("MAML state has no optimiser state; expected one for outer ppo")
            self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.trpo_rejections = int(state["trpo_rejections"])

    # ----- worker side ------------------------------------------------------------------

    def _batch(self, rollout: Rollout, device: torch.device | str) -> Any:
        return to_batch(
            rollout, self.maml.gamma, self.maml.gae_lambda, self.maml.normalize_advantages,
            device=device,
        )

    def _cpu_params_and_step_size(self) -> tuple[Params, StepSize]:
        params = {n: p.detach().cpu() for n, p in self._policy_params().items()}
        step: StepSize = (
            {n: t.detach().cpu() for n, t in self.step_sizes.items()}
            if self.step_sizes else self.maml.inner_lr
        )
        return params, step

    def _sample_and_adapt(
        self,
        envs: list[gym.Env],
        spec: TaskSpec,
        weights_version: int,
        step_sizes: list[StepSize],
        purpose: int,
    ) -> list[Rollout]:
        """Sample with θ, step, sample again, ...: `len(step_sizes) + 1` rollouts."""
        generator = torch.Generator().manual_seed(spec.seed)
        params, _ = self._cpu_params_and_step_size()
        rollouts = []
        for stage in range(len(step_sizes) + 1):
            rollout = self.sample_stage(
                envs, params, generator, stage_seed(spec.seed, purpose, stage), spec.task,
                weights_version,
            )
            rollouts.append(rollout)
            if stage < len(step_sizes):
                params = self.adapted_params(params, rollout, step_sizes[stage])
        return rollouts

    def sample_stage(
        self,
        envs: list[gym.Env],
        params: Params,
        generator: torch.Generator,
        seed: int,
        task: Any,
        weights_version: int = 0,
    ) -> Rollout:
        """`episodes_per_task` episodes with `params`, episode j reset with `seed + j`."""
        actor = FeedForwardActor(self.policy, params, generator)
        return sample_rollout(
            envs, actor, num_sequences=self.maml.episodes_per_task, seed=seed, task=task,
            weights_version=weights_version,
        )

    def adapted_params(self, params: Params, rollout: Rollout, step_size: StepSize) -> Params:
        """θ' after one inner step from `params` on `rollout`, as plain CPU values."""
        # First order suffices: the worker needs only the values of θ'.
        with torch.enable_grad():
            adapted = inner_step(
                self.policy, params, self._batch(rollout, "cpu"), step_size,
                self.maml.estimator, first_order=True, where=f" on task {rollout.task!r}",
            )
        return {n: p.detach() for n, p in adapted.items()}

    def eval_step_size(self, step: int) -> StepSize:
        """The step size of inner step `step` (from 0) in evaluation: the learned one, or
        `maml.eval_inner_lrs` (its last entry for every later step)."""
        _, learned = self._cpu_params_and_step_size()
        if self.step_sizes:
            return learned
        lrs = self.maml.eval_inner_lrs
        return lrs[min(step, len(lrs) - 1)]

    def inference_policy(self, seed: int = 0) -> Any:
        """The current weights as a `rlmeta.inference.Policy` (`MAMLPolicy`) for a plain
        Gymnasium loop; `seed` seeds its action sampling."""
        from rlmeta.maml.inference import MAMLPolicy  # it builds on this module

        return MAMLPolicy(self, seed)

    def run_task(self, envs: list[gym.Env], spec: TaskSpec, weights_version: int) -> TaskResult:
        _, step = self._cpu_params_and_step_size()
        rollouts = self._sample_and_adapt(
            envs, spec, weights_version, [step] * self.maml.inner_steps, _TRAIN
        )
        return TaskResult(
            index=spec.index, task=spec.task, seed=spec.seed, weights_version=weights_version,
            rollouts=rollouts,
            metrics={f"return/step_{k}": r.mean_return() for k, r in enumerate(rollouts)},
            env_steps=sum(r.num_steps for r in rollouts),
        )

    def evaluate_task(
        self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int
    ) -> dict[str, float]:
        if adapt_steps < 0:
            raise ValueError(f"adapt_steps must be >= 0, got {adapt_steps}")
        steps = [self.eval_step_size(k) for k in range(adapt_steps)]
        rollouts = self._sample_and_adapt(envs, spec, self.updates, steps, EVAL)
        metrics = {f"return/step_{k}": r.mean_return() for k, r in enumerate(rollouts)}
        for k, rollout in enumerate(rollouts):
            if rollout.successes is not None:
                metrics[f"success/step_{k}"] = rollout.success_rate()
        return metrics

    # ----- learner side -----------------------------------------------------------------

    def _check_rollout_counts(self, results: list[TaskResult]) -> None:
        for result in results:
            if len(result.rollouts) != self.maml.inner_steps + 1:
                raise ValueError(
                    f"task result {result.index} has {len(result.rollouts)} rollouts; expected "
                    f"inner_steps + 1 = {self.maml.inner_steps + 1}"
                )

    def _task_batches(self, results: list[TaskResult]) -> list[TaskBatches]:
        tasks = []
        for result in results:
            batches = [self._batch(r, self.device) for r in result.rollouts]
            tasks.append(TaskBatches(inner=batches[:-1], post=batches[-1]))
        return tasks

    def _objective(self, tasks: list[TaskBatches], first_order: bool, **kwargs: Any) -> MetaOutput:
        return meta_objective(
            self.policy, self._policy_params(), self._step_size(), tasks, self.maml.estimator,
            first_order, task_count=self._task_count, **kwargs,
        )

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        if not results:
            raise ValueError("update got no task results; expected a meta-batch of at least one")
        results = sorted(results, key=lambda r: r.index)
        self._check_rollout_counts(results)
        metrics: dict[str, float] = {}
        # Every learner of a group is given the whole meta-batch: the returns (and meta-train
        # success, Meta-World's measure, where the env reports it) are read off it alone, and
        # the meta-objective is shared out by tasks, a consecutive shard each.
        for k in range(self.maml.inner_steps + 1):
            metrics[f"return/step_{k}"] = float(np.mean(
                [r.rollouts[k].mean_return() for r in results]))
            if results[0].rollouts[k].successes is not None:
                metrics[f"success/step_{k}"] = float(np.mean(
                    [r.rollouts[k].success_rate() for r in results]))
        self._task_count = None
        if is_group(self.collective):
            assert self.collective is not None
            self._task_count = len(results)
            results = results[slice(*shard_bounds(
                len(results), self.collective.rank, self.collective.world_size))]
        tasks = self._task_batches(results)
        # The logged entropy is summed over the group along with the outer loop's first sum.
        entropy_sum = self._entropy_sum(tasks)
        if self.maml.outer == "trpo":
            metrics.update(self._trpo_update(tasks, entropy_sum))
        elif self.maml.outer == "ppo":
            metrics.update(self._ppo_update(tasks, entropy_sum))
        else:
            metrics.update(self._reptile_update(tasks, entropy_sum))
        self.updates += 1
        return metrics

    def _entropy_sum(self, tasks: list[TaskBatches]) -> float:
        """The sum over this learner's tasks of the policy's mean entropy on each."""
        with torch.no_grad():
            total = 0.0
            for task in tasks:
                # The episodes sampled with θ itself (the only ones when inner_steps is 0).
                batch = task.inner[0] if task.inner else task.post
                entropy = self.policy.distribution(batch.observations).entropy()
                total += float(masked_mean(entropy, batch.mask))
            return total

    def _assign(self, leaves: list[Tensor], values: list[Tensor]) -> None:
        with torch.no_grad():
            for leaf, value in zip(leaves, values, strict=True):
                leaf.copy_(value)

    def _trpo_update(self, tasks: list[TaskBatches], entropy_sum: float) -> dict[str, float]:
        """One TRPO step on the meta-objective (Schulman et al. 2015, appendix C): natural
        gradient by conjugate gradient on Fisher-vector products of the mean KL of the adapted
        policies, scaled to the trust region, then a backtracking line search."""
        cfg = self.maml
        leaves = list(self._meta_parameters().values())
        out = self._objective(tasks, cfg.first_order)
        grads, (old_loss, entropy_sum) = self._total_with(
            flat(torch.autograd.grad(out.loss, leaves, retain_graph=True)), out.loss.detach(),
            entropy_sum)
        check_finite("meta-gradient", grads)
        # A group sums its shards' products, then damps once.
        damping = cfg.cg_damping if self._task_count is None else 0.0
        if cfg.fisher == "adapted":
            shard_product = adapted_fisher_product(
                self.policy, self._policy_params(), self._step_size(), tasks, out.adapted,
                damping, cfg.fisher_step_stride, task_count=self._task_count)
        else:
            shard_product = hessian_vector_product(out.kl, leaves, damping)
        fisher_product = shard_product
        if self._task_count is not None:
            def fisher_product(vector: Tensor) -> Tensor:
                return self._total(shard_product(vector)) + cfg.cg_damping * vector
        direction, curvature = conjugate_gradient(fisher_product, grads, cfg.cg_iters)
        curvature = float(curvature)
        check_finite("TRPO search direction", direction)
        metrics = {"loss/surrogate": -old_loss, "trpo/grad_norm": float(grads.norm()),
                   "entropy": entropy_sum / self._tasks_in_batch(tasks)}
        old_values = [leaf.detach().clone() for leaf in leaves]
        result = None
        if curvature > 0 and math.isfinite(curvature):
            # The largest step along `direction` whose quadratic KL model equals max_kl.
            full_step = unflat(direction * math.sqrt(2.0 * cfg.max_kl / curvature), leaves)

            def evaluate(fraction: float) -> tuple[float, float]:
                self._assign(leaves, _stepped(old_values, full_step, fraction))
                trial = self._objective(tasks, first_order=True, old=out.old)
                loss, kl = self._floats(trial.loss.detach(), trial.kl.detach())
                return loss, kl

            result = backtracking_line_search(
                evaluate, old_loss, cfg.max_kl, cfg.ls_max_steps, cfg.ls_backtrack_ratio
            )
        if result is not None and result.accepted:
            self._assign(leaves, _stepped(old_values, full_step, result.fraction))
            metrics.update({
                "kl": result.kl, "trpo/accepted": 1.0, "trpo/rejected": 0.0,
                "trpo/step_fraction": result.fraction,
                "trpo/improvement": old_loss - result.loss,
            })
        else:
            self._assign(leaves, old_values)
            self.trpo_rejections += 1
            metrics.update({"kl": 0.0, "trpo/accepted": 0.0, "trpo/rejected": 1.0,
                            "trpo/step_fraction": 0.0, "trpo/improvement": 0.0})
        metrics["trpo/rejections_total"] = float(self.trpo_rejections)
        return metrics

    def _ppo_update(self, tasks: list[TaskBatches], entropy_sum: float) -> dict[str, float]:
        """ProMP-style outer loop (Rothfuss et al. 2019, eq. 18 without the inner KL penalty):
        `ppo_epochs` Adam steps on the clipped surrogate of the adapted policies."""
        cfg = self.maml
        assert self.optimizer is not None
        leaves = list(self._meta_parameters().values())
        old = None
        first_loss = 0.0
        for epoch in range(cfg.ppo_epochs):
            out = self._objective(tasks, cfg.first_order, old=old, clip=cfg.ppo_clip)
            if epoch == 0:
                old = out.old
                first_loss, entropy_sum = self._floats(out.loss.detach(), entropy_sum)
            self.optimizer.zero_grad()
            grads = torch.autograd.grad(out.loss, leaves)
            if self._task_count is not None:
                grads = unflat(self._total(flat(grads)), leaves)
            check_finite("PPO meta-gradient", *grads)
            for leaf, grad in zip(leaves, grads, strict=True):
                leaf.grad = grad
            self.optimizer.step()
        final = self._objective(tasks, first_order=True, old=old, clip=cfg.ppo_clip)
        final_loss, final_kl = self._floats(final.loss.detach(), final.kl.detach())
        return {
            "loss/surrogate": -first_loss, "kl": final_kl,
            "entropy": entropy_sum / self._tasks_in_batch(tasks),
            "ppo/improvement": first_loss - final_loss,
            "ppo/epochs": float(cfg.ppo_epochs),
        }

    def _reptile_update(self, tasks: list[TaskBatches], entropy_sum: float) -> dict[str, float]:
        """Reptile (Nichol et al. 2018, Algorithm 2, batched): θ ← θ + ε · mean_tasks(θ' − θ),
        with θ' from the first-order inner loop on each task's stored episodes."""
        cfg = self.maml
        params = self._policy_params()
        out = self._objective(tasks, first_order=True)
        delta = {
            n: torch.stack([a[n].detach() - p.detach() for a in out.adapted]).mean(0)
            for n, p in params.items()
        } if self._task_count is None else {
            n: self._total(torch.stack([a[n].detach() - p.detach() for a in out.adapted]).sum(0))
            / self._task_count
            for n, p in params.items()
        }
        check_finite("Reptile step", *delta.values())
        moved = [p.detach() + cfg.outer_lr * delta[n] for n, p in params.items()]
        self._assign(list(params.values()), moved)
        final = self._objective(tasks, first_order=True, old=out.old)
        loss, kl, entropy_sum = self._floats(out.loss.detach(), final.kl.detach(), entropy_sum)
        return {
            "loss/surrogate": -loss, "kl": kl, "entropy": entropy_sum / self._tasks_in_batch(tasks),
            "reptile/step_norm": float(cfg.outer_lr * flat(list(delta.values())).norm()),
        }
