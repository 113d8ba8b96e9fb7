"""MAML-RL: differentiable inner loop, meta-gradient estimators and TRPO/PPO/Reptile outer loops."""

from rlmeta.maml.algorithm import MAMLAlgorithm
from rlmeta.maml.config import MAMLConfig

__all__ = ["MAMLAlgorithm", "MAMLConfig"]
