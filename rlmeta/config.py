"""Experiment configuration: dataclasses with one docstring line per field.

A YAML file in `experiments/` maps onto `ExperimentConfig`; see `rlmeta.config_io` for loading,
validation and `--set key=value` overrides. Derived values are properties, computed once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PolicyConfig:
    """Network shape shared by the algorithms."""

    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    """Hidden layer widths of the MLP (MAML) or of the layers before the GRU (RL²)."""
    activation: str = "relu"
    """Hidden activation: relu or tanh."""
    init_log_std: float = 0.0
    """Initial log standard deviation of Gaussian policies (state-independent)."""
    distribution: str = "auto"
    """Action distribution: auto (from the action space), gaussian (Box), categorical (Discrete)."""


@dataclass
class MAMLConfig:
    """MAML-RL (Finn et al. 2017) with TRPO, PPO (ProMP-style) or Reptile outer loop."""

    meta_batch_size: int = 20
    """Tasks per meta-iteration."""
    episodes_per_task: int = 20
    """Episodes sampled per task for each inner step and for the post-adaptation estimate."""
    inner_steps: int = 1
    """Policy-gradient steps in the inner loop during training (0: multi-task, no adaptation)."""
    inner_lr: float = 0.1
    """Inner-loop step size (the initial value when learned)."""
    learn_inner_lr: bool = False
    """Learn one inner step size per parameter (Meta-SGD)."""
    first_order: bool = False
    """Drop second-order terms of the meta-gradient (FO-MAML)."""
    estimator: str = "maml"
    """Meta-gradient estimator: maml (the paper's) or dice (ProMP/DiCE low-variance)."""
    outer: str = "trpo"
    """Outer optimiser: trpo, ppo or reptile."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda for advantages (1.0: Monte-Carlo returns minus baseline, as in the paper)."""
    max_kl: float = 0.01
    """TRPO trust region: maximum mean KL between old and new policy."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the TRPO step."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector product."""
    fisher: str = "exact"
    """TRPO's metric. exact: the Hessian of the adapted policies' mean KL in θ, each product a
    double backward through every task's inner loop; adapted: each adapted policy's Fisher at its
    own θ', the inner step's Jacobian left out (several times cheaper; the meta-gradient stays
    exact and the line search still enforces the true KL). Not with learn_inner_lr."""
    fisher_step_stride: int = 1
    """fisher adapted: take the Fisher on every k-th time step of the post-adaptation episodes
    (TRPO, Schulman et al. 2015, §6, used 10% of the data: k = 10)."""
    ls_max_steps: int = 15
    """Backtracking line-search steps."""
    ls_backtrack_ratio: float = 0.8
    """Step shrink factor per line-search step."""
    ppo_clip: float = 0.2
    """PPO outer-loop clip range."""
    ppo_epochs: int = 5
    """PPO outer-loop gradient steps per meta-batch."""
    outer_lr: float = 1e-3
    """Learning rate of the PPO and Reptile outer loops (Reptile: the interpolation ε)."""
    eval_inner_lrs: list[float] = field(default_factory=lambda: [0.1, 0.05])
    """Step sizes at evaluation: first step, then the last value for every later step."""
    normalize_advantages: bool = True
    """Standardise advantages per rollout (mean 0, std 1 over real steps) in both loops."""


@dataclass
class RL2Config:
    """RL² (Duan et al. 2016): a GRU policy trained with PPO over multi-episode trials."""

    meta_batch_size: int = 20
    """Tasks per iteration."""
    trials_per_task: int = 4
    """Trials sampled per task per iteration."""
    episodes_per_trial: int = 10
    """Episodes of the same task in one trial (the hidden state carries across them)."""
    hidden_size: int = 256
    """GRU hidden state size."""
    recurrent_cell: str = "gru"
    """gru: torch's GRU, as in the paper; layer_norm_gru: a GRU whose gate pre-activations are
    layer-normalised (as the published PPO reproduction of the MDP table used). Its steps run
    one by one in Python; on the RL² tables' short trials that is about as fast as torch's GRU."""
    trial_progress_input: bool = False
    """Also feed the policy the fraction of its trial's episodes already done (not in the paper,
    whose input is s, a, r, d): how much exploring is worth depends on what is left."""
    value_network: str = "shared"
    """shared: the value head reads the policy's GRU; separate: the value function has a GRU of
    its own over the same inputs (the value loss then leaves the policy's features alone)."""
    gamma: float = 0.99
    """Discount factor across the whole trial."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    lr: float = 5e-4
    """Adam learning rate."""
    lr_schedule: str = "constant"
    """constant, or linear: the learning rate falls linearly from `lr` towards 0 over the run's
    `iterations` updates (as CleanRL's PPO anneals it)."""
    clip: float = 0.2
    """PPO clip range."""
    epochs: int = 5
    """PPO epochs per iteration."""
    minibatches: int = 4
    """Minibatches per epoch; trials are kept whole."""
    value_coef: float = 0.5
    """Value-loss coefficient."""
    entropy_coef: float = 0.01
    """Entropy-bonus coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    weight_decay: float = 0.0
    """0: Adam. Above 0: AdamW's decoupled weight decay on the weight matrices (the published PPO
    reproduction of the RL² tables used 0.01)."""
    reward_scale: float = 1.0
    """Multiplies rewards in value targets and advantages only; policy inputs keep raw rewards.
    Aim for discounted trial returns of order 1-10 (README, "What rlmeta does")."""
    eval_actions: str = "sample"
    """How evaluation acts: sample, as training does; or mode, the policy's most probable action
    (the mean of a Gaussian head). Training always samples."""


@dataclass
class ExperimentConfig:
    """One experiment: what to train, on which task family, for how long."""

    algorithm: str = "maml"
    """maml or rl2."""
    env: str = "rlmeta/Navigation2D-v0"
    """Gymnasium id or `module:Class` of a task environment."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the env constructor."""
    iterations: int = 100
    """Meta-iterations to train."""
    seed: int = 0
    """Seed of the driver, the task sampler and every worker's sampling."""
    init_from: str | None = None
    """Start from the policy weights of this checkpoint (a .pt file or a run dir's newest) of the
    same algorithm and network shape, with a fresh optimiser; None: a random initialisation."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many iterations (and at the end)."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep (the best is kept as well)."""
    eval_tasks: int = 40
    """Held-out tasks for `rlmeta evaluate`."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Network shape."""
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    """MAML settings (used when algorithm is maml)."""
    rl2: RL2Config = field(default_factory=RL2Config)
    """RL² settings (used when algorithm is rl2)."""
    workers: int = 2
    """Rollout worker actors (0: sample in the driver process, no Ray)."""
    envs_per_worker: int = 10
    """Environments each worker steps together with one batched policy forward."""
    address: str | None = None
    """Ray address; None starts a local instance, "auto" joins a running cluster."""
    device: str = "auto"
    """Learner device: auto (GPU when the cluster has one), cpu or cuda."""
    learner_cpus: int = 1
    """CPUs the learner actor reserves, and the torch threads it computes with (Ray's rule:
    threads = reserved CPUs); with `workers: 0`, the threads of the one training process. More
    speeds up updates where nothing else runs on the cores; with another busy process on them,
    the extra threads stall each other (README, "Distributed training")."""
    mode: str = "sync"
    """sync: sample iteration v with weights v; async: sample while the learner updates."""
    max_staleness: int = 1
    """Async mode: at most this many weight versions between sampling and learning."""
    on_env_error: str = "raise"
    """raise: stop on an env that raises or returns non-finite values; drop: skip that task."""
    max_task_retries: int = 3
    """Times a task lost with a dead worker is resampled elsewhere before the run stops."""
