"""MAML settings: the `maml:` section of an experiment config (pydantic only, no torch)."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from rlmeta.config import (
    MAX_TASKS,
    Discount,
    Float,
    NonNegativeFloat,
    PositiveFloat,
    Settings,
    UnitFloat,
    non_negative_up_to,
    positive_up_to,
)

Outer = Literal["trpo", "ppo", "reptile"]
OUTERS: tuple[str, ...] = typing.get_args(Outer)


class MAMLConfig(Settings):
    """MAML-RL (Finn et al. 2017) with TRPO, PPO (ProMP-style) or Reptile outer loop."""

    meta_batch_size: positive_up_to(MAX_TASKS) = 20
    """Tasks per meta-iteration (at most 100,000; the paper uses 20 to 40)."""
    episodes_per_task: positive_up_to(10_000) = 20
    """Episodes sampled per task for each inner step and for the post-adaptation estimate (at
    most 10,000; the paper uses 20, shipped configs at most 40)."""
    inner_steps: non_negative_up_to(100) = 1
    """Policy-gradient steps in the inner loop during training (0: multi-task, no adaptation,
    the paper's "pretrained" baseline; at most 100, the paper uses 1 to 3)."""
    inner_lr: PositiveFloat = 0.1
    """Inner-loop step size (the initial value when learned)."""
    learn_inner_lr: StrictBool = False
    """Learn one inner step size per parameter (Meta-SGD)."""
    first_order: StrictBool = False
    """Drop second-order terms of the meta-gradient (FO-MAML)."""
    estimator: Literal["maml", "dice"] = "maml"
    """Meta-gradient estimator: maml (the paper's) or dice (ProMP/DiCE low-variance)."""
    outer: Outer = "trpo"
    """Outer optimiser: trpo, ppo or reptile."""
    gamma: Discount = 0.99
    """Discount factor."""
    gae_lambda: UnitFloat = 1.0
    """GAE lambda for advantages (1.0: Monte-Carlo returns minus baseline, as in the paper)."""
    max_kl: PositiveFloat = 0.01
    """TRPO trust region: maximum mean KL between old and new policy."""
    cg_iters: positive_up_to(1000) = 10
    """Conjugate-gradient iterations for the TRPO step (at most 1,000)."""
    cg_damping: NonNegativeFloat = 1e-5
    """Damping added to the Fisher-vector product."""
    fisher: Literal["exact", "adapted"] = "adapted"
    """TRPO's metric. adapted: each adapted policy's Fisher matrix at its own θ', the inner
    step's Jacobian in θ left out (the meta-gradient stays exact and the line search enforces the
    true KL): 4-8x cheaper per update than exact at stride 10, and level with it after one step
    at the MAML tables' budgets. exact: the Hessian of the adapted policies' mean KL in θ, each
    product a double backward through every task's inner loop (benchmarks/results/learner.md)."""
    fisher_step_stride: positive_up_to(100_000) = 10
    """fisher adapted: take the Fisher on every k-th time step of the post-adaptation episodes
    (TRPO, Schulman et al. 2015, §6, used 10% of the data: k = 10). 1 uses every step: 2.5-3x
    cheaper than exact instead of 4-8x, and it kept exact's return after a step over 500
    Navigation2D iterations, where k = 10 lost 1.3 (docs/algorithms.md). exact uses every step."""
    ls_max_steps: positive_up_to(1000) = 15
    """Backtracking line-search steps (at most 1,000: 0.8**1000 is below float precision)."""
    ls_backtrack_ratio: Annotated[Float, Field(gt=0, lt=1)] = 0.8
    """Step shrink factor per line-search step."""
    ppo_clip: PositiveFloat = 0.2
    """PPO outer-loop clip range."""
    ppo_epochs: positive_up_to(1000) = 5
    """PPO outer-loop gradient steps per meta-batch (at most 1,000)."""
    outer_lr: PositiveFloat = 1e-3
    """Learning rate of the PPO and Reptile outer loops (Reptile: the interpolation ε)."""
    eval_inner_lrs: Annotated[list[PositiveFloat], Field(min_length=1, max_length=100)] = Field(
        default_factory=lambda: [0.1, 0.05]
    )
    """Step sizes at evaluation: first step, then the last value for every later step (at most
    100, one per inner step)."""
    eval_steps: non_negative_up_to(100) | None = None
    """Inner steps evaluations show, 0..K: `rlmeta evaluate`'s default and the held-out
    evaluation during training (`eval_every`), whose cost grows with K + 1 sampled rounds per
    task; None: the paper's 0..3, or `inner_steps` if more. At least `inner_steps`, whose return
    picks `best.pt` (at most 100)."""
    normalize_advantages: StrictBool = True
    """Standardise advantages per rollout (mean 0, std 1 over real steps) in both loops."""

    @model_validator(mode="after")
    def _check_combinations(self) -> MAMLConfig:
        if self.inner_steps == 0 and (self.learn_inner_lr or self.outer == "reptile"):
            raise ValueError(
                "maml.inner_steps 0 has no inner loop to learn a step size for or to move "
                "towards; expected learn_inner_lr false and outer trpo or ppo"
            )
        if self.eval_steps is not None and self.eval_steps < self.inner_steps:
            raise ValueError(
                f"maml.eval_steps {self.eval_steps} evaluates fewer inner steps than training "
                f"takes; expected at least inner_steps ({self.inner_steps}), whose return picks "
                f"best.pt"
            )
        if self.learn_inner_lr and self.outer == "reptile":
            raise ValueError(
                "maml.learn_inner_lr needs a gradient-based outer loop; expected outer trpo or "
                "ppo with Reptile's fixed step size"
            )
        return self
