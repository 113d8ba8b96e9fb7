"""RL² (Duan et al. 2016): a GRU policy trained with PPO over multi-episode trials.

A worker samples `trials_per_task` trials of `episodes_per_trial` episodes on one task (or on
several tasks at once, `run_tasks`); the hidden state carries across the episodes of a trial, so
adaptation happens in the state, not in the weights. The learner recomputes every trial from its
recorded initial state, computes GAE over the whole trial (episode ends inside a trial are not
dones), and takes PPO steps on minibatches of whole trials, in the shape of CleanRL's
`ppo_atari_lstm.py`. In a learner group every learner holds the whole batch and takes its share
of every minibatch (the same trials as one learner's minibatch): a chunk of its trials, or one
side of a policy with a separate value network; the gradients are summed over the group, so
every replica takes the same Adam step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.collectives import Collective, is_group, shard_bounds, sum_tensor
from rlmeta.config import ExperimentConfig, with_changes
from rlmeta.device import resolve_device
from rlmeta.losses import normalize_advantages
from rlmeta.returns import gae
from rlmeta.rl2.actor import RecurrentActor
from rlmeta.rl2.config import RL2Config
from rlmeta.rl2.policy import RecurrentPolicy
from rlmeta.rl2.ppo import ppo_loss, ppo_policy_terms, ppo_value_loss
from rlmeta.rl2.trials import INITIAL_STATE_KEY, TrialBatch, collate_trials
from rlmeta.rollout import Rollout, sample_rollout, set_task_on


def make_optimizer(
    policy: torch.nn.Module, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Adam; with `weight_decay` > 0, AdamW's decoupled decay on the weight matrices only (the
    1-D parameters, biases and layer-norm gains, are not shrunk towards 0)."""
    if weight_decay == 0.0:
        return torch.optim.Adam(policy.parameters(), lr=lr, eps=1e-5)
    parameters = list(policy.parameters())
    groups = [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, eps=1e-5)


def scheduled_lr(settings: RL2Config, update: int, total_updates: int) -> float:
    """The learning rate of update `update` (0-based) of `total_updates`."""
    if settings.lr_schedule == "constant":
        return settings.lr
    # Linear: full at the first update, lr / total_updates at the last, never below 0 if a run
    # is resumed or extended past its planned length.
    return settings.lr * max(0.0, 1.0 - update / max(1, total_updates))


def trial_metrics(
    episode_returns: np.ndarray, successes: np.ndarray | None = None
) -> dict[str, float]:
    """`return/trial` and `return/episode_i` (and `success/episode_i`), means over trials.

    `episode_returns` and `successes` are `[trials, episodes_per_trial]`.
    """
    metrics = {"return/trial": float(episode_returns.sum(axis=1).mean())}
    for i in range(episode_returns.shape[1]):
        metrics[f"return/episode_{i}"] = float(episode_returns[:, i].mean())
    if successes is not None:
        for i in range(successes.shape[1]):
            metrics[f"success/episode_{i}"] = float(successes[:, i].mean())
    return metrics


class RL2Algorithm:
    """RL² with PPO; implements `rlmeta.algorithm.Algorithm`."""

    config_section: ClassVar[str] = "rl2"
    settings_model: ClassVar[type[RL2Config]] = RL2Config
    evaluation_axis: ClassVar[str] = "episode in the trial"

    @classmethod
    def meta_batch_size(cls, config: ExperimentConfig) -> int:
        return config.rl2.meta_batch_size

    @classmethod
    def best_metric(cls, config: ExperimentConfig) -> str:
        """The return summed over a whole trial."""
        return "return/trial"

    @classmethod
    def progress_keys(cls, config: ExperimentConfig) -> tuple[str, ...]:
        return (cls.best_metric(config),)

    @classmethod
    def tasks_per_call(cls, config: ExperimentConfig) -> int:
        """One trial per env slot: `envs_per_worker // trials_per_task` tasks fill a worker."""
        return max(1, config.envs_per_worker // config.rl2.trials_per_task)

    @classmethod
    def default_adapt_steps(cls, config: ExperimentConfig) -> int:
        """Unused: a trial's episodes are its adaptation."""
        return 0

    @classmethod
    def with_eval_actions(cls, config: ExperimentConfig, actions: str) -> ExperimentConfig:
        return with_changes(config, rl2=with_changes(config.rl2, eval_actions=actions))

    def __init__(
        self,
        config: ExperimentConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.settings = config.rl2
        self.action_space = action_space
        self.device = torch.device(resolve_device(device))
        # Initial weights come from the global torch RNG, which `rlmeta.run.build.build_algorithm`
        # seeds (forked) so every process building from the same config gets the same weights.
        self.policy = RecurrentPolicy(
            observation_space,
            action_space,
            hidden_sizes=list(config.policy.hidden_sizes),
            hidden_size=self.settings.hidden_size,
            activation=config.policy.activation,
            init_log_std=config.policy.init_log_std,
            separate_value=self.settings.value_network == "separate",
            trial_episodes=(
                self.settings.episodes_per_trial if self.settings.trial_progress_input else None
            ),
            cell=self.settings.recurrent_cell,
        ).to(self.device)
        self.optimizer = make_optimizer(self.policy, self.settings.lr, self.settings.weight_decay)
        # Minibatch order; saved in state_dict so a resumed run shuffles as the original would.
        self.shuffle_generator = torch.Generator().manual_seed(config.seed)
        self.updates = 0
        # A learner group's sums; None: one learner on the whole batch, no collective.
        self.collective: Collective | None = None

    # -- worker side -------------------------------------------------------------------------

    def sample_trials(
        self,
        envs: list[gym.Env],
        spec: TaskSpec,
        weights_version: int,
        num_trials: int | None = None,
        actions: str = "sample",
    ) -> Rollout:
        """`num_trials` (default `trials_per_task`) trials on `spec.task`; exact given `spec.seed`.

        Each trial's starting hidden state is stored in `rollout.extras["initial_state"]`.
        `actions="mode"` acts on the policy's most probable action (evaluation only).
        """
        if not envs:
            raise ValueError("RL² sampling needs at least one env, got an empty list")
        set_task_on(envs, spec.task, spec.index)
        actor = RecurrentActor(self.policy, torch.Generator().manual_seed(spec.seed), actions)
        rollout = sample_rollout(
            envs,
            actor,
            num_sequences=num_trials or self.settings.trials_per_task,
            episodes_per_sequence=self.settings.episodes_per_trial,
            seed=spec.seed,
            task=spec.task,
            weights_version=weights_version,
        )
        rollout.extras[INITIAL_STATE_KEY] = actor.initial_states()
        return rollout

    def run_task(self, envs: list[gym.Env], spec: TaskSpec, weights_version: int) -> TaskResult:
        """Sample `trials_per_task` trials on one task with the current weights."""
        return _task_result(spec, self.sample_trials(envs, spec, weights_version))

    def run_tasks(
        self,
        envs: list[gym.Env],
        specs: list[TaskSpec],
        weights_version: int,
        num_trials: int | None = None,
        actions: str = "sample",
    ) -> list[TaskResult]:
        """`num_trials` (T, default `trials_per_task`) trials on each spec, all stepped together:
        one policy forward per step for every trial of the call, which is what makes tiny envs
        cheap to sample.

        Spec k runs in env slots `[k*T, (k+1)*T)`, one trial per slot; trial i of a spec resets
        with `spec.seed + i` as in `run_task`. The actions come from one generator seeded with
        the first spec's seed, so a spec's episodes depend on the whole call's specs: the
        runtime keeps a call's specs fixed for that reason. `actions` as in `sample_trials`.
        """
        trials = num_trials or self.settings.trials_per_task
        if not specs:
            raise ValueError("RL² run_tasks needs at least one task spec, got an empty list")
        if len(specs) * trials > len(envs):
            raise ValueError(
                f"RL² run_tasks needs {trials} envs per spec (one per trial): {len(specs)} specs "
                f"need {len(specs) * trials} envs, got {len(envs)}"
            )
        envs = envs[: len(specs) * trials]
        for k, spec in enumerate(specs):
            set_task_on(envs[k * trials : (k + 1) * trials], spec.task, spec.index)
        actor = RecurrentActor(
            self.policy, torch.Generator().manual_seed(specs[0].seed), actions
        )
        rollout = sample_rollout(
            envs,
            actor,
            num_sequences=len(envs),
            episodes_per_sequence=self.settings.episodes_per_trial,
            seed=specs[0].seed,
            task=[spec.task for spec in specs],
            weights_version=weights_version,
            sequence_seeds=[spec.seed + i for spec in specs for i in range(trials)],
        )
        # One trial per slot, all started together: trial order is slot order.
        rollout.extras[INITIAL_STATE_KEY] = actor.initial_states()
        results = []
        for k, spec in enumerate(specs):
            part = rollout.select_sequences(np.arange(k * trials, (k + 1) * trials))
            part.task, part.seed = spec.task, spec.seed
            results.append(_task_result(spec, part))
        return results

    def evaluate_task(
        self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int
    ) -> dict[str, float]:
        """Returns per episode of a trial, `return/episode_0..n-1` and `return/trial`.

        RL² adapts in its hidden state, not by gradient steps, so `adapt_steps` is ignored: a
        trial always has the trained `episodes_per_trial` episodes. Means over `trials_per_task`
        trials; `success/episode_i` too when the env reports `info["success"]`. Acts as
        `rl2.eval_actions` says.
        """
        del adapt_steps
        rollout = self.sample_trials(
            envs, spec, weights_version=self.updates, actions=self.settings.eval_actions
        )
        return trial_metrics(rollout.episode_returns(), rollout.successes)

    def inference_policy(self, seed: int = 0) -> Any:
        """The current weights as a `rlmeta.inference.Policy` (`RL2Policy`) for a plain
        Gymnasium loop; `seed` seeds its action sampling."""
        from rlmeta.rl2.inference import RL2Policy  # it builds on this module

        return RL2Policy(self, seed)

    # -- learner side ------------------------------------------------------------------------

    def set_collective(self, collective: Collective) -> None:
        self.collective = collective

    def _evaluate_batch(self, batch: TrialBatch) -> tuple[Any, torch.Tensor]:
        distribution, values, _ = self.policy(*_policy_inputs(batch))
        return distribution, values

    def _values(self, batch: TrialBatch) -> torch.Tensor:
        """The value head's output on every step (the value network alone when separate)."""
        if self.policy.separate_value:
            return self.policy.values(*_policy_inputs(batch))
        return self._evaluate_batch(batch)[1]

    def _targets(self, batch: TrialBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, GAE advantages, returns) of every step of `batch`, without gradients."""
        settings = self.settings
        with torch.no_grad():
            values = self._values(batch)
            # The value head starts near 0 and Adam moves it by about lr per step, so trial returns
            # in the hundreds (tabular MDPs) would take it thousands of steps to reach; scaling
            # the rewards here brings the targets to its range. Advantages are normalised anyway,
            # so the policy gradient's direction does not depend on the scale.
            advantages = gae(
                batch.rewards * settings.reward_scale,
                values,
                batch.trial_dones,
                batch.mask,
                settings.gamma,
                settings.gae_lambda,
            )
            returns = (advantages + values) * batch.mask
        return values, advantages, returns

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        """PPO epochs over minibatches of whole trials; returns losses and trial returns."""
        settings = self.settings
        batch = collate_trials(results, self.device)
        sharded = is_group(self.collective)
        values, advantages, returns = (
            self._group_targets(batch) if sharded else self._targets(batch))

        lr = scheduled_lr(settings, self.updates, self.config.iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n_minibatches = min(settings.minibatches, batch.num_trials)
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(settings.epochs):
            order = torch.randperm(batch.num_trials, generator=self.shuffle_generator)
            for trials in order.chunk(n_minibatches):
                if sharded:
                    for name, value in self._shard_step(batch, advantages, returns, trials).items():
                        sums[name] = sums.get(name, 0.0) + value
                    steps += 1
                    continue
                trials = trials.to(self.device)
                minibatch = batch.select(trials)
                distribution, new_values = self._evaluate_batch(minibatch)
                loss = ppo_loss(
                    distribution,
                    new_values,
                    minibatch.actions,
                    minibatch.old_log_probs,
                    normalize_advantages(
                        advantages[:, trials], minibatch.mask, zero_if_empty=True
                    ),
                    returns[:, trials],
                    minibatch.mask,
                    clip=settings.clip,
                    value_coef=settings.value_coef,
                    entropy_coef=settings.entropy_coef,
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.policy.parameters(), settings.max_grad_norm
                )
                self.optimizer.step()
                for name, value in (
                    ("loss/policy", loss.policy),
                    ("loss/value", loss.value),
                    ("entropy", loss.entropy),
                    ("approx_kl", loss.approx_kl),
                    ("clip_fraction", loss.clip_fraction),
                    ("grad_norm", grad_norm),
                ):
                    sums[name] = sums.get(name, 0.0) + float(value)
                steps += 1
        self.updates += 1

        episode_returns = np.concatenate([r.rollouts[0].episode_returns() for r in results])
        metrics = {name: total / steps for name, total in sums.items()}
        metrics["explained_variance"] = _explained_variance(values, returns, batch.mask)
        metrics["lr"] = lr
        metrics.update(trial_metrics(episode_returns))
        return metrics

    # -- a learner group's share ---------------------------------------------------------------
    #
    # Every learner of a group holds the whole meta-batch: what it shares is the work, cut so
    # that all learners finish each step together (they meet at its gradient sum). A recurrent
    # core costs per time step a part that does not shrink with the number of trials (weight
    # gradients, kernel launches), so halving every minibatch's trials leaves each learner
    # about two thirds of the work; with a separate value network, the action side and the value
    # side share no parameter and are trained by different halves of the group on whole
    # minibatches instead.

    def _role(self) -> tuple[int, int, int, int]:
        """(sides, this learner's side, its chunk, chunks per minibatch): with a separate value
        network and an even group, even ranks train the action side (side 0) and odd ranks the
        value side (1), each side cutting a minibatch's trials into `chunks` consecutive
        chunks; otherwise one side trains both on `world_size` chunks."""
        assert self.collective is not None
        rank, size = self.collective.rank, self.collective.world_size
        sides = 2 if self.policy.separate_value and size % 2 == 0 else 1
        return sides, rank % sides, rank // sides, size // sides

    def _group_targets(
        self, batch: TrialBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_targets` of the whole batch: each learner computes those of a consecutive slice of
        the trials (GAE never crosses trials) and the group's sum fills in the rest (the others
        add zeros there, so the sum is exact)."""
        assert self.collective is not None
        start, stop = shard_bounds(
            batch.num_trials, self.collective.rank, self.collective.world_size)
        packed = torch.zeros(3, *batch.mask.shape, device=self.device)
        if stop > start:
            part = batch.select(torch.arange(start, stop, device=self.device))
            packed[:, :, start:stop] = torch.stack(self._targets(part))
        values, advantages, returns = sum_tensor(self.collective, packed)
        return values, advantages, returns

    def _shard_step(
        self,
        batch: TrialBatch,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        trials: torch.Tensor,
    ) -> dict[str, float]:
        """One PPO step of the group on the minibatch `trials`: this learner's loss terms (of its
        side, on its chunk) are shares of the minibatch's means; the gradients and the logged
        parts are summed over the group in one call and the gradient clipped as a whole, so
        every replica takes the same Adam step. Returns the minibatch's logged parts and the
        summed gradient's norm."""
        settings = self.settings
        sides, side, chunk, chunks = self._role()
        trials = trials.to(self.device)
        mask = batch.mask[:, trials]
        # The minibatch's statistics, as one learner computes them: every learner holds it all.
        count = mask.sum().clamp_min(1.0)
        normalized = normalize_advantages(advantages[:, trials], mask, zero_if_empty=True)
        start, stop = shard_bounds(len(trials), chunk, chunks)
        mine, normalized = trials[start:stop], normalized[:, start:stop]
        minibatch = batch.select(mine)
        parameters = list(self.policy.parameters())
        self.optimizer.zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        parts = [zero] * len(_SHARED_PARTS)
        if len(mine):  # more learners than a minibatch has trials leave some without any
            if sides == 1:
                distribution, new_values = self._evaluate_batch(minibatch)
                loss = ppo_loss(
                    distribution, new_values, minibatch.actions, minibatch.old_log_probs,
                    normalized, returns[:, mine], minibatch.mask, clip=settings.clip,
                    value_coef=settings.value_coef, entropy_coef=settings.entropy_coef,
                    count=count,
                )
                loss.total.backward()
                parts = [loss.policy, loss.value, loss.entropy, loss.approx_kl,
                         loss.clip_fraction]
            elif side == 0:
                distribution, _, _ = self.policy(*_policy_inputs(minibatch),
                                                 compute_values=False)
                terms = ppo_policy_terms(distribution, minibatch.actions,
                                         minibatch.old_log_probs, normalized, minibatch.mask,
                                         settings.clip, count)
                (terms.policy - settings.entropy_coef * terms.entropy).backward()
                parts = [terms.policy.detach(), zero, terms.entropy.detach(), terms.approx_kl,
                         terms.clip_fraction]
            else:
                value_loss = ppo_value_loss(self.policy.values(*_policy_inputs(minibatch)),
                                            returns[:, mine], minibatch.mask, count)
                (settings.value_coef * value_loss).backward()
                parts = [zero, value_loss.detach(), zero, zero, zero]
        # The gradients, whether each parameter has one (Adam skips those without) and the
        # logged parts, summed in one call.
        used = torch.tensor([float(p.grad is not None) for p in parameters], device=self.device)
        summed = sum_tensor(self.collective, torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
            for p in parameters] + [used, torch.stack(parts).to(used.dtype)]))
        grads = summed[: -len(parameters) - len(parts)].split([p.numel() for p in parameters])
        has_grad = summed[-len(parameters) - len(parts): -len(parts)]
        for parameter, grad, has in zip(parameters, grads, has_grad, strict=True):
            parameter.grad = grad.view_as(parameter) if has > 0 else None
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        self.optimizer.step()
        logged = dict(zip(_SHARED_PARTS, summed[-len(parts):].tolist(), strict=True))
        return {**logged, "grad_norm": float(grad_norm)}

    # -- weights and checkpoints -------------------------------------------------------------

    def get_weights(self) -> Weights:
        """Policy parameters as CPU tensors, keyed by parameter name."""
        return {name: t.detach().cpu().clone() for name, t in self.policy.state_dict().items()}

    def set_weights(self, weights: Weights) -> None:
        """Load policy parameters (from `get_weights` of an identically configured RL2Algorithm)."""
        expected = set(self.policy.state_dict())
        if set(weights) != expected:
            missing = sorted(expected - set(weights))
            unexpected = sorted(set(weights) - expected)
            raise ValueError(
                f"RL² weights do not match the policy: missing {missing}, unexpected {unexpected}"
            )
        current = self.policy.state_dict()
        misshapen = [f"{name} {tuple(weights[name].shape)} (expected {tuple(t.shape)})"
                     for name, t in current.items() if weights[name].shape != t.shape]
        if misshapen:
            raise ValueError(f"RL² weights do not match the policy's shapes: "
                             f"{', '.join(misshapen)}")
        self.policy.load_state_dict(weights)

    def state_dict(self) -> dict[str, Any]:
        """Weights, Adam state, update count and shuffle RNG: tensors and plain data only."""
        return {
            "weights": self.get_weights(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "shuffle_generator": self.shuffle_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"weights", "optimizer", "updates", "shuffle_generator"} - set(state)
        if missing:
            raise ValueError(f"RL² state_dict is missing keys {sorted(missing)}")
        self.set_weights(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.shuffle_generator.set_state(state["shuffle_generator"])


# The logged loss parts a learner of a group holds a share of (the group sums them).
_SHARED_PARTS = ("loss/policy", "loss/value", "entropy", "approx_kl", "clip_fraction")


def _policy_inputs(batch: TrialBatch) -> tuple[torch.Tensor, ...]:
    """What the policy reads of a batch of trials, in `RecurrentPolicy.forward`'s order."""
    return (batch.observations, batch.prev_actions, batch.prev_rewards, batch.prev_dones,
            batch.initial_states)


def _task_result(spec: TaskSpec, rollout: Rollout) -> TaskResult:
    return TaskResult(
        index=spec.index,
        task=spec.task,
        seed=spec.seed,
        weights_version=rollout.weights_version,
        rollouts=[rollout],
        metrics=trial_metrics(rollout.episode_returns(), rollout.successes),
        env_steps=rollout.num_steps,
    )


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R] over real steps: how much of the return the value head predicts."""
    real = mask > 0
    target = returns[real]
    variance = target.var(unbiased=False)
    if variance <= 0:
        return float("nan")
    return float(1.0 - (target - values[real]).var(unbiased=False) / variance)
