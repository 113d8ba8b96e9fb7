"""rlmeta: distributed meta-reinforcement learning (MAML-RL and RL²) on Ray and PyTorch."""

import rlmeta_envs as _envs  # noqa: F401  (registers the rlmeta/* task families with gymnasium)
from rlmeta.run import build as _registry  # noqa: F401  (gives configs the algorithms' sections)

__version__ = "0.1.0"
