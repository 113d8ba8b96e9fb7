"""Bernoulli multi-armed bandits (Duan et al. 2016, RL², §4.1): one pull per episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from . import _canvas
from ._checks import check_render_mode, float_list, task_error, task_fields


class BernoulliBanditEnv(gym.Env):
    """`arms` Bernoulli arms with per-task means; every episode is one pull.

    The observation is a constant 1-vector: all the information is in the rewards, which a
    recurrent policy must carry across the episodes of a trial. The pull ends the episode as a
    true termination (there is nothing after it), so `terminated=True`; `horizon` is 1.
    Task: {"means": [k floats in [0, 1]]}. `render_mode="rgb_array"` draws the arms' means as
    gray bars and the pulled arm in green (reward 1) or red (reward 0).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}
    horizon = 1

    def __init__(self, arms: int = 5, render_mode: str | None = None) -> None:
        check_render_mode(render_mode, self.metadata)
        self.render_mode = render_mode
        self._pulled: tuple[int, float] | None = None
        if not isinstance(arms, int) or arms < 2:
            raise ValueError(f"arms must be an int >= 2, got {arms!r}")
        self.arms = arms
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(arms)
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"means": [float(m) for m in row]} for row in rng.uniform(0.0, 1.0, (n, self.arms))]

    def set_task(self, task: Any) -> None:
        expected = f"key 'means' ({self.arms} floats in [0, 1])"
        means = float_list(task_fields(task, ("means",), expected)["means"], self.arms, 0.0, 1.0)
        if means is None:
            raise task_error(expected, task)
        self._means = means

    def get_task(self) -> dict[str, Any]:
        return {"means": list(self._means)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pulled = None
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arm = int(action)
        if not 0 <= arm < self.arms:
            raise ValueError(f"action must be an arm in [0, {self.arms}), got {action!r}")
        reward = 1.0 if self.np_random.random() < self._means[arm] else 0.0
        self._pulled = (arm, reward)
        return np.ones(1, dtype=np.float32), reward, True, False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        height, bar, gap = 128, 24, 8
        image = _canvas.blank(height, self.arms * (bar + gap) + gap)
        for arm, mean in enumerate(self._means):
            x = gap + arm * (bar + gap)
            color = _canvas.LIGHT_GRAY
            if self._pulled is not None and self._pulled[0] == arm:
                color = _canvas.GREEN if self._pulled[1] > 0 else _canvas.RED
            _canvas.fill_rect(image, x, 0, x + bar, height, color)
            _canvas.fill_rect(image, x + 4, height * (1 - mean), x + bar - 4, height, _canvas.GRAY)
        return image
