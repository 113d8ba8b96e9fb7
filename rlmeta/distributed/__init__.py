"""Distributed runtime: rollout workers, a versioned parameter server and a learner on Ray.

The training loop calls `make_runtime(config, algorithm_factory, env_factory)` and drives the
returned `Runtime`; with `config.workers == 0` nothing here touches Ray.
"""

from rlmeta.distributed.errors import RolloutError, TaskFailure
from rlmeta.distributed.runtime import Runtime, SampleHandle, make_runtime

__all__ = ["RolloutError", "Runtime", "SampleHandle", "TaskFailure", "make_runtime"]
