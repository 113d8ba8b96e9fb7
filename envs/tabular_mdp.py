"""Random tabular MDPs (Duan et al. 2016, RL², §4.2)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from . import _canvas
from ._checks import check_render_mode, task_error, task_fields

_SUM_TOLERANCE = 1e-6


class TabularMDPEnv(gym.Env):
    """`states` × `actions` MDP with per-task mean rewards and transition matrices.

    Episodes start in state 0 and are truncated after `horizon` steps; the observation is the
    one-hot state. The reward is the task's mean for (s, a) plus N(0, 1) noise, and the next
    state is drawn from the task's row for (s, a); both come from `env.np_random`.
    Task: {"rewards": S×A floats, "transitions": S×A×S probabilities (rows sum to 1)}.
    `render_mode="rgb_array"` draws the states as a row of cells, the current one blue, and
    under it the last reward as a bar from the middle (green above 0, red below, ±4 full).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self, states: int = 10, actions: int = 5, horizon: int = 10,
        render_mode: str | None = None,
    ) -> None:
        check_render_mode(render_mode, self.metadata)
        self.render_mode = render_mode
        self._last_reward = 0.0
        for name, value in (("states", states), ("actions", actions), ("horizon", horizon)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.states, self.actions, self.horizon = states, actions, horizon
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(actions)
        self._one_hot = np.eye(states, dtype=np.float32)
        self._state = 0
        self._t = 0
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        tasks = []
        for _ in range(n):
            rewards = rng.normal(1.0, 1.0, size=(self.states, self.actions))
            transitions = rng.dirichlet(np.ones(self.states), size=(self.states, self.actions))
            tasks.append({"rewards": rewards.tolist(), "transitions": transitions.tolist()})
        return tasks

    def set_task(self, task: Any) -> None:
        s, a = self.states, self.actions
        expected = (
            f"keys 'rewards' ({s}x{a} finite floats) and 'transitions' "
            f"({s}x{a}x{s} probabilities, each row summing to 1)"
        )
        fields = task_fields(task, ("rewards", "transitions"), expected)
        try:
            rewards = np.asarray(fields["rewards"], dtype=np.float64)
            transitions = np.asarray(fields["transitions"], dtype=np.float64)
        except (TypeError, ValueError):
            raise task_error(expected, task) from None
        if (
            rewards.shape != (s, a)
            or transitions.shape != (s, a, s)
            or not np.isfinite(rewards).all()
            or not np.isfinite(transitions).all()
            or (transitions < 0).any()
            or np.abs(transitions.sum(axis=-1) - 1.0).max() > _SUM_TOLERANCE
        ):
            raise task_error(expected, task)
        self._rewards = rewards
        self._transitions = transitions
        # Inverse-CDF sampling in step(): cheaper than rng.choice, and the last edge is exactly 1
        # so rounding never sends a draw past the final state.
        cumulative = np.cumsum(transitions, axis=-1)
        cumulative[..., -1] = 1.0
        self._cumulative = cumulative

    def get_task(self) -> dict[str, Any]:
        return {"rewards": self._rewards.tolist(), "transitions": self._transitions.tolist()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = 0
        self._t = 0
        self._last_reward = 0.0
        return self._one_hot[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < self.actions:
            raise ValueError(f"action must be in [0, {self.actions}), got {action!r}")
        s = self._state
        rng = self.np_random
        reward = float(self._rewards[s, a] + rng.standard_normal())
        self._state = int(np.searchsorted(self._cumulative[s, a], rng.random(), side="right"))
        self._t += 1
        self._last_reward = reward
        return self._one_hot[self._state].copy(), reward, False, self._t >= self.horizon, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cell, gap = 24, 4
        width = self.states * (cell + gap) + gap
        image = _canvas.blank(2 * cell + 3 * gap, width)
        for state in range(self.states):
            x = gap + state * (cell + gap)
            color = _canvas.BLUE if state == self._state else _canvas.LIGHT_GRAY
            _canvas.fill_rect(image, x, gap, x + cell, gap + cell, color)
        middle, y = width / 2, 2 * gap + cell
        length = float(np.clip(self._last_reward / 4.0, -1.0, 1.0)) * (width / 2 - gap)
        color = _canvas.GREEN if length >= 0 else _canvas.RED
        _canvas.fill_rect(image, middle, y, middle + length, y + cell, color)
        _canvas.fill_rect(image, middle, y, middle + 1, y + cell, _canvas.GRAY)
        return image
