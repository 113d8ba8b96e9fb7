"""RL² settings: the `rl2:` section of an experiment config (pydantic only, no torch)."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import StrictBool

from rlmeta.config import (
    MAX_TASKS,
    MAX_WIDTH,
    Discount,
    NonNegativeFloat,
    PositiveFloat,
    Settings,
    UnitFloat,
    positive_up_to,
)

ActionMode = Literal["sample", "mode"]
ACTION_MODES: tuple[str, ...] = typing.get_args(ActionMode)
LrSchedule = Literal["constant", "linear"]
LR_SCHEDULES: tuple[str, ...] = typing.get_args(LrSchedule)
ValueNetwork = Literal["shared", "separate"]
VALUE_NETWORKS: tuple[str, ...] = typing.get_args(ValueNetwork)
RecurrentCell = Literal["gru", "layer_norm_gru"]


class RL2Config(Settings):
    """RL² (Duan et al. 2016): a GRU policy trained with PPO over multi-episode trials."""

    meta_batch_size: positive_up_to(MAX_TASKS) = 20
    """Tasks per iteration (at most 100,000; shipped configs use up to 1,200)."""
    trials_per_task: positive_up_to(10_000) = 4
    """Trials sampled per task per iteration (at most 10,000)."""
    episodes_per_trial: positive_up_to(10_000) = 10
    """Episodes of the same task in one trial (the hidden state carries across them); at most
    10,000, the paper's longest trials have 500."""
    hidden_size: positive_up_to(MAX_WIDTH) = 256
    """GRU hidden state size (at most 16,384)."""
    recurrent_cell: RecurrentCell = "gru"
    """gru: torch's GRU, as in the paper; layer_norm_gru: a GRU whose gate pre-activations are
    layer-normalised (as the published PPO reproduction of the MDP table used). Its steps run
    one by one in Python; on the RL² tables' short trials that is about as fast as torch's GRU."""
    trial_progress_input: StrictBool = False
    """Also feed the policy the fraction of its trial's episodes already done (not in the paper,
    whose input is s, a, r, d): how much exploring is worth depends on what is left."""
    value_network: ValueNetwork = "shared"
    """shared: the value head reads the policy's GRU; separate: the value function has a GRU of
    its own over the same inputs (the value loss then leaves the policy's features alone)."""
    gamma: Discount = 0.99
    """Discount factor across the whole trial."""
    gae_lambda: UnitFloat = 0.95
    """GAE lambda."""
    lr: PositiveFloat = 5e-4
    """Adam learning rate."""
    lr_schedule: LrSchedule = "constant"
    """constant, or linear: the learning rate falls linearly from `lr` towards 0 over the run's
    `iterations` updates (as CleanRL's PPO anneals it)."""
    clip: PositiveFloat = 0.2
    """PPO clip range."""
    epochs: positive_up_to(1000) = 5
    """PPO epochs per iteration (at most 1,000)."""
    minibatches: positive_up_to(MAX_TASKS) = 4
    """Minibatches per epoch; trials are kept whole (at most 100,000)."""
    value_coef: NonNegativeFloat = 0.5
    """Value-loss coefficient."""
    entropy_coef: NonNegativeFloat = 0.01
    """Entropy-bonus coefficient."""
    max_grad_norm: PositiveFloat = 0.5
    """Gradient-norm clip."""
    weight_decay: NonNegativeFloat = 0.0
    """0: Adam. Above 0: AdamW's decoupled weight decay on the weight matrices (the published PPO
    reproduction of the RL² tables used 0.01)."""
    reward_scale: PositiveFloat = 1.0
    """Multiplies rewards in value targets and advantages only; policy inputs keep raw rewards.
    Aim for discounted trial returns of order 1-10 (docs/algorithms.md, "RL²")."""
    eval_actions: ActionMode = "sample"
    """How evaluation acts: sample, as training does; or mode, the policy's most probable action
    (the mean of a Gaussian head). Training always samples."""
