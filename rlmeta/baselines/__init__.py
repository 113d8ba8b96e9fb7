"""Classic baselines for meta-RL tasks: what RL² and MAML are compared with.

Bernoulli bandits (`bandits`): random, UCB1, Thompson sampling, greedy, ε-greedy, the
finite-horizon Gittins index (`gittins`) and exact Bayes-optimal play (`bayes_optimal`).
Tabular MDPs (`tabular_mdp`): random, greedy, ε-greedy and posterior sampling (PSRL). They run
through rlmeta's own task envs, so they see exactly the tasks and reward noise a meta-learned
policy sees. This package imports neither the algorithms nor Ray.
"""

from rlmeta.baselines.bandits import (
    BANDIT_AGENTS,
    UCB1,
    BanditAgent,
    BayesOptimalBandit,
    EpsilonGreedyBandit,
    GittinsBandit,
    GreedyBandit,
    RandomBandit,
    ThompsonBandit,
    bandit_episode_returns,
)
from rlmeta.baselines.bayes_optimal import BAYES_OPTIMAL_MAX_PULLS, bayes_optimal_trial_value
from rlmeta.baselines.gittins import finite_horizon_gittins_indices
from rlmeta.baselines.tabular_mdp import (
    MDP_POLICIES,
    POSTERIOR_SAMPLING,
    MDPModelAgent,
    mdp_episode_returns,
)

__all__ = [
    "BANDIT_AGENTS",
    "BAYES_OPTIMAL_MAX_PULLS",
    "MDP_POLICIES",
    "POSTERIOR_SAMPLING",
    "UCB1",
    "BanditAgent",
    "BayesOptimalBandit",
    "EpsilonGreedyBandit",
    "GittinsBandit",
    "GreedyBandit",
    "MDPModelAgent",
    "RandomBandit",
    "ThompsonBandit",
    "bandit_episode_returns",
    "bayes_optimal_trial_value",
    "finite_horizon_gittins_indices",
    "mdp_episode_returns",
]
