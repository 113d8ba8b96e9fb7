"""rlmeta: distributed meta-reinforcement learning (MAML-RL and RL²) on Ray and PyTorch.

The Python API, `rlmeta.train`, `rlmeta.load`, `rlmeta.evaluate` and `rlmeta.make_config`
(`rlmeta.run.api`), is imported on first use, so `import rlmeta` stays light (no torch).
"""

from typing import Any

import rlmeta_envs as _envs  # noqa: F401  (registers the rlmeta/* task families with gymnasium)
from rlmeta.run import build as _registry  # noqa: F401  (gives configs the algorithms' sections)

__version__ = "0.1.0"
__all__ = ["evaluate", "load", "make_config", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rlmeta.run import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlmeta' has no attribute {name!r}")
