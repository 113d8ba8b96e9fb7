"""Task-distribution environments, installed as the package `rlmeta_envs`.

Importing this package registers every family with gymnasium under the `rlmeta/` namespace.
Entry points are strings, so MuJoCo and Meta-World load only when their env is made.
Each env keeps its horizon itself (`horizon=` kwarg, exposed as `env.unwrapped.horizon`), so no
`max_episode_steps` is registered: one source of truth for episode length.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

FAMILIES: dict[str, dict[str, Any]] = {
    "rlmeta/Navigation2D-v0": {
        "entry_point": "rlmeta_envs.navigation:Navigation2DEnv",
        "description": "point agent from the origin to a hidden goal; reward -L2 distance; "
        "horizon 100",
        "task": {"goal": "2 floats, U[-0.5, 0.5] each"},
    },
    "rlmeta/Bandit-v0": {
        "entry_point": "rlmeta_envs.bandit:BernoulliBanditEnv",
        "description": "Bernoulli bandit with `arms` arms (default 5), one pull per episode",
        "task": {"means": "`arms` floats, U[0, 1] each"},
    },
    "rlmeta/TabularMDP-v0": {
        "entry_point": "rlmeta_envs.tabular_mdp:TabularMDPEnv",
        "description": "random MDP, 10 states x 5 actions, one-hot obs, start in state 0; "
        "horizon 10",
        "task": {
            "rewards": "states x actions means, N(1, 1); reward noise N(0, 1)",
            "transitions": "states x actions x states, Dirichlet(1) rows",
        },
    },
    "rlmeta/HalfCheetahVel-v0": {
        "entry_point": "rlmeta_envs.locomotion:HalfCheetahVelEnv",
        "description": "MuJoCo HalfCheetah, run at a target velocity; reward -|v - v_goal| "
        "- 0.05|a|^2; horizon 200",
        "task": {"velocity": "float, U[0, 2]"},
    },
    "rlmeta/HalfCheetahDir-v0": {
        "entry_point": "rlmeta_envs.locomotion:HalfCheetahDirEnv",
        "description": "MuJoCo HalfCheetah, run forward or backward; reward direction*v "
        "- 0.05|a|^2; horizon 200",
        "task": {"direction": "-1 or 1"},
    },
    "rlmeta/AntVel-v0": {
        "entry_point": "rlmeta_envs.locomotion:AntVelEnv",
        "description": "MuJoCo Ant, run at a target velocity; reward -|v - v_goal| + 1 "
        "- control - contact + 0.05 survive; horizon 200",
        "task": {"velocity": "float, U[0, 3]"},
    },
    "rlmeta/AntDir-v0": {
        "entry_point": "rlmeta_envs.locomotion:AntDirEnv",
        "description": "MuJoCo Ant, run forward or backward; reward direction*v - control "
        "- contact + 0.05 survive; horizon 200",
        "task": {"direction": "-1 or 1"},
    },
    "rlmeta/MetaWorld-v0": {
        "entry_point": "rlmeta_envs.metaworld_adapter:MetaWorldEnv",
        "description": "Meta-World v3 benchmark (benchmark=ML1|ML10|ML25|ML45, env_name for ML1, "
        "split=train|test); info['success']; horizon 500",
        "task": {
            "env_name": "a task name of the benchmark split, e.g. reach-v3",
            "index": "int, position among that env's tasks in the split",
        },
    },
}


def describe_families() -> list[tuple[str, str, dict[str, str]]]:
    """(id, one-line description, {task parameter: range or values}) for each family."""
    return [(env_id, f["description"], dict(f["task"])) for env_id, f in FAMILIES.items()]


def _register() -> None:
    for env_id, family in FAMILIES.items():
        # Re-importing (e.g. importlib.reload in a notebook) must not warn about overrides.
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=family["entry_point"])


_register()

__all__ = ["FAMILIES", "describe_families"]
