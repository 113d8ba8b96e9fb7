"""MuJoCo locomotion task families (Finn et al. 2017, §5.3): HalfCheetah and Ant, velocity
and direction.

Rewards follow the MAML paper's code as reproduced by pytorch-maml-rl and ProMP: the cheetah
pays 0.05‖a‖² for control; the ant adds a 1.0 offset to the velocity term, pays 0.005‖a‖² and
5e-4 Σ clip(cfrc_ext, ±1)², earns a 0.05 survive bonus, and terminates when unhealthy. The
simulation, observation and reset noise are gymnasium's v5 classes, unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from ._checks import as_float, float_in, task_error, task_fields


class _VelocityTask:
    """Task {"velocity": v}: the reward's velocity term is -|v_x - v| (+ `velocity_offset`)."""

    velocity_range: tuple[float, float]
    velocity_offset = 0.0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"velocity": float(v)} for v in rng.uniform(*self.velocity_range, size=n)]

    def set_task(self, task: Any) -> None:
        low, high = self.velocity_range
        expected = f"key 'velocity' (a float in [{low}, {high}])"
        velocity = float_in(task_fields(task, ("velocity",), expected)["velocity"], low, high)
        if velocity is None:
            raise task_error(expected, task)
        self._goal_velocity = velocity

    def get_task(self) -> dict[str, Any]:
        return {"velocity": self._goal_velocity}

    def velocity_reward(self, x_velocity: float) -> float:
        return self.velocity_offset - abs(x_velocity - self._goal_velocity)


class _DirectionTask:
    """Task {"direction": ±1}: the reward's velocity term is direction · v_x."""

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"direction": int(d)} for d in 2 * rng.integers(0, 2, size=n) - 1]

    def set_task(self, task: Any) -> None:
        expected = "key 'direction' (-1 or 1)"
        direction = as_float(task_fields(task, ("direction",), expected)["direction"])
        if direction not in (-1.0, 1.0):
            raise task_error(expected, task)
        self._direction = int(direction)

    def get_task(self) -> dict[str, Any]:
        return {"direction": self._direction}

    def velocity_reward(self, x_velocity: float) -> float:
        return self._direction * x_velocity


class _EpisodeClock:
    """Counts steps so the env itself truncates at `horizon`, and pickles with its task.

    Gymnasium's MuJoCo envs pickle by re-running the constructor (EzPickle); the task is added
    to that state so a copy sent to another process keeps the task it was set to.
    """

    horizon: int
    _t: int

    def _start_clock(self, horizon: int, kwargs: dict[str, Any]) -> None:
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        self.horizon = horizon
        self._t = 0
        # Replace the parent's positional EzPickle arguments with this class's signature.
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {"horizon": horizon, **kwargs}
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "task": self.get_task()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        task = state.pop("task")
        super().__setstate__(state)
        self.set_task(task)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._t = 0
        return super().reset(seed=seed, options=options)

    def _simulate(self, action: Any, ctrl_cost_weight: float) -> tuple[float, float, float]:
        """Advance the simulation; returns (x velocity, task's velocity reward, control cost)."""
        action = np.asarray(action)
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_velocity = float((self.data.qpos[0] - x_before) / self.dt)
        return x_velocity, self.velocity_reward(x_velocity), ctrl_cost_weight * float(
            np.dot(action, action)
        )

    def _tick(self) -> bool:
        self._t += 1
        return self._t >= self.horizon


class _CheetahTaskEnv(_EpisodeClock, HalfCheetahEnv):
    CTRL_COST = 0.05

    def __init__(self, horizon: int = 200, **kwargs: Any) -> None:
        HalfCheetahEnv.__init__(self, **kwargs)
        self._start_clock(horizon, kwargs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x_velocity, forward, ctrl_cost = self._simulate(action, self.CTRL_COST)
        info = {"x_velocity": x_velocity, "reward_forward": forward, "reward_ctrl": -ctrl_cost}
        return self._get_obs(), forward - ctrl_cost, False, self._tick(), info


class _AntTaskEnv(_EpisodeClock, AntEnv):
    CTRL_COST = 0.005
    SURVIVE_REWARD = 0.05

    def __init__(self, horizon: int = 200, **kwargs: Any) -> None:
        AntEnv.__init__(self, **kwargs)
        self._start_clock(horizon, kwargs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x_velocity, forward, ctrl_cost = self._simulate(action, self.CTRL_COST)
        contact_cost = float(self.contact_cost)
        reward = forward - ctrl_cost - contact_cost + self.SURVIVE_REWARD
        terminated = not self.is_healthy
        info = {
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
        }
        return self._get_obs(), reward, terminated, self._tick() and not terminated, info


class HalfCheetahVelEnv(_VelocityTask, _CheetahTaskEnv):
    """HalfCheetah with a target velocity U[0, 2]; reward -|v - v_goal| - 0.05‖a‖²."""

    velocity_range = (0.0, 2.0)


class HalfCheetahDirEnv(_DirectionTask, _CheetahTaskEnv):
    """HalfCheetah running forward (+1) or backward (-1); reward direction·v - 0.05‖a‖²."""


class AntVelEnv(_VelocityTask, _AntTaskEnv):
    """Ant with a target velocity U[0, 3]; reward 1 - |v - v_goal| - costs + 0.05."""

    velocity_range = (0.0, 3.0)
    velocity_offset = 1.0


class AntDirEnv(_DirectionTask, _AntTaskEnv):
    """Ant running forward (+1) or backward (-1); reward direction·v - costs + 0.05."""
