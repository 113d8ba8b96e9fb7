"""2D navigation (Finn et al. 2017, §5.3): a point moves from the origin towards a hidden goal."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from . import _canvas
from ._checks import check_render_mode, float_list, task_error, task_fields


class Navigation2DEnv(gym.Env):
    """Point agent at the origin; each step moves it by the action clipped to ±`max_action`.

    Reward is minus the L2 distance to the goal after the move; the episode terminates within
    `goal_radius` of the goal and is truncated at `horizon` steps. Task: {"goal": [x, y]}.
    `render_mode="rgb_array"` draws the goal, the episode's path and the point, with numpy.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    RENDER_SIZE = 256

    def __init__(
        self,
        horizon: int = 100,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        max_action: float = 0.1,
        goal_radius: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        check_render_mode(render_mode, self.metadata)
        self.render_mode = render_mode
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not goal_low < goal_high:
            raise ValueError(f"goal_low must be < goal_high, got {goal_low} and {goal_high}")
        self.horizon = int(horizon)
        self.goal_low = float(goal_low)
        self.goal_high = float(goal_high)
        self.max_action = float(max_action)
        self.goal_radius = float(goal_radius)
        # The farthest the point can travel in one episode bounds the observation.
        reach = self.horizon * self.max_action
        self.observation_space = gym.spaces.Box(-reach, reach, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            -self.max_action, self.max_action, shape=(2,), dtype=np.float32
        )
        self._x = self._y = 0.0
        self._t = 0
        self._path = [(0.0, 0.0)]
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    # Task protocol ---------------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        goals = rng.uniform(self.goal_low, self.goal_high, size=(n, 2))
        return [{"goal": [float(g[0]), float(g[1])]} for g in goals]

    def set_task(self, task: Any) -> None:
        expected = f"key 'goal' (2 floats in [{self.goal_low}, {self.goal_high}])"
        fields = task_fields(task, ("goal",), expected)
        goal = float_list(fields["goal"], 2, self.goal_low, self.goal_high)
        if goal is None:
            raise task_error(expected, task)
        self._goal_x, self._goal_y = goal

    def get_task(self) -> dict[str, Any]:
        return {"goal": [self._goal_x, self._goal_y]}

    # Gymnasium API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._x = self._y = 0.0
        self._t = 0
        self._path = [(0.0, 0.0)]
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # Plain floats: two-element numpy arithmetic costs more than it computes.
        m = self.max_action
        self._x += min(max(float(action[0]), -m), m)
        self._y += min(max(float(action[1]), -m), m)
        self._t += 1
        if self.render_mode is not None:
            self._path.append((self._x, self._y))
        distance = math.hypot(self._x - self._goal_x, self._y - self._goal_y)
        terminated = distance < self.goal_radius
        truncated = not terminated and self._t >= self.horizon
        obs = np.array((self._x, self._y), dtype=np.float32)
        return obs, -distance, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """The square around the goal range (twice its extent), origin at the centre: the goal
        (green, its radius at least a few pixels), the path so far (blue) and the point (red)."""
        if self.render_mode != "rgb_array":
            return None
        size = self.RENDER_SIZE
        half = 2.0 * max(abs(self.goal_low), abs(self.goal_high))
        scale = size / (2.0 * half)

        def pixels(x: float, y: float) -> tuple[float, float]:
            return (x + half) * scale, (half - y) * scale  # y up

        image = _canvas.blank(size, size)
        centre = size / 2
        _canvas.fill_rect(image, 0, centre, size, centre + 1, _canvas.LIGHT_GRAY)
        _canvas.fill_rect(image, centre, 0, centre + 1, size, _canvas.LIGHT_GRAY)
        _canvas.disk(image, *pixels(self._goal_x, self._goal_y),
                     max(self.goal_radius * scale, 6.0), _canvas.GREEN)
        _canvas.polyline(image, np.array([pixels(x, y) for x, y in self._path]), _canvas.BLUE)
        _canvas.disk(image, *pixels(self._x, self._y), 5.0, _canvas.RED)
        return image
