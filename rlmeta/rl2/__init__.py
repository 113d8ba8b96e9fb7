"""RL² (Duan et al. 2016): a recurrent policy trained with PPO over multi-episode trials."""

from rlmeta.rl2.actor import RecurrentActor
from rlmeta.rl2.algorithm import RL2Algorithm, trial_metrics
from rlmeta.rl2.config import ACTION_MODES, RL2Config
from rlmeta.rl2.policy import RecurrentPolicy, mode_actions, sample_actions
from rlmeta.rl2.ppo import PPOLoss, ppo_loss
from rlmeta.rl2.trials import TrialBatch, collate_trials

__all__ = [
    "ACTION_MODES",
    "PPOLoss",
    "RL2Algorithm",
    "RL2Config",
    "RecurrentActor",
    "RecurrentPolicy",
    "TrialBatch",
    "collate_trials",
    "mode_actions",
    "ppo_loss",
    "sample_actions",
    "trial_metrics",
]
