"""Task envs written for other meta-RL libraries: `sample_tasks(n)` without an RNG, seeded from
the task stream so runs are reproducible; an env that does not fit the protocol is a one-line
error naming the method, before anything is written.

The envs follow the interfaces as those libraries document them, without importing them:
RLlib's `TaskSettableEnv` (`sample_tasks(n_tasks)`, `set_task(task)`, `get_task()`, tasks drawn
with numpy's global RNG) and learn2learn's `MetaEnv` (`sample_tasks(num_tasks)` returning dicts,
a task chosen in `__init__`).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import rlmeta
from rlmeta import tasks
from rlmeta.metrics import METRICS_FILE, read_metrics

ROOT = Path(__file__).resolve().parent.parent
HORIZON = 5


class _PointEnv(gym.Env):
    """A 1-D point for a few steps; reward -|action - target(task)|."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def target(self) -> float:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray):
        self.t += 1
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - self.target())
        return np.full(1, self.t / HORIZON, np.float32), reward, False, self.t >= HORIZON, {}


class RLlibStyleEnv(_PointEnv):
    """As RLlib's `TaskSettableEnv` documents it (its pendulum-mass example's shape)."""

    def __init__(self) -> None:
        self.mass = 1.0

    def sample_tasks(self, n_tasks: int) -> np.ndarray:
        return np.random.uniform(low=-1.0, high=1.0, size=(n_tasks,))

    def set_task(self, task: float) -> None:
        self.mass = float(task)

    def get_task(self) -> float:
        return self.mass

    def target(self) -> float:
        return self.mass


class Learn2LearnStyleEnv(_PointEnv):
    """As learn2learn's `MetaEnv` documents it: dict tasks, one sampled on construction."""

    def __init__(self, task: dict[str, Any] | None = None) -> None:
        super().__init__()
        if task is None:
            task = self.sample_tasks(1)[0]
        self.set_task(task)

    def sample_tasks(self, num_tasks: int) -> list[dict[str, Any]]:
        directions = np.random.choice((-1.0, 1.0), (num_tasks,))
        return [{"direction": float(d), "scale": random.random()} for d in directions]

    def set_task(self, task: dict[str, Any]) -> None:
        self._task = task

    def get_task(self) -> dict[str, Any]:
        return self._task

    def target(self) -> float:
        return self._task["direction"] * self._task["scale"]


class NoGetTaskEnv(RLlibStyleEnv):
    get_task = None  # type: ignore[assignment]


class SetTaskWithoutArgumentEnv(RLlibStyleEnv):
    def set_task(self) -> None:  # type: ignore[override]
        pass


class SampleTasksWithExtraArgumentEnv(RLlibStyleEnv):
    def sample_tasks(self, n_tasks: int, rng: Any, low: float) -> np.ndarray:  # type: ignore
        return np.zeros(n_tasks)


class WrongCountEnv(RLlibStyleEnv):
    def sample_tasks(self, n_tasks: int) -> np.ndarray:
        return np.zeros(n_tasks + 1)


def config(env: str, **changes: Any) -> dict[str, Any]:
    return {"algorithm": "maml", "env": f"{__name__}:{env}", "iterations": 2, "workers": 0,
            "envs_per_worker": 2, "policy": {"hidden_sizes": [8]},
            "maml": {"meta_batch_size": 3, "episodes_per_task": 2}, **changes}


@pytest.mark.parametrize("env_class", [RLlibStyleEnv, Learn2LearnStyleEnv])
def test_n_only_sample_tasks_is_seeded_by_the_task_stream(env_class: type[gym.Env]) -> None:
    env = env_class()
    np.random.seed(99)
    random.seed(99)
    before = np.random.get_state()[1].copy(), random.getstate()
    first = tasks.sample_tasks(env, 4, np.random.default_rng(1))
    assert first == tasks.sample_tasks(env, 4, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    tasks.sample_tasks(env, 4, rng)
    assert tasks.sample_tasks(env, 4, rng) != first  # the stream moves on
    assert len(set(map(repr, first))) == 4
    # The caller's global RNGs are left as they were.
    assert (np.random.get_state()[1] == before[0]).all() and random.getstate() == before[1]


@pytest.mark.parametrize("env", ["RLlibStyleEnv", "Learn2LearnStyleEnv"])
def test_a_foreign_env_trains_reproducibly(env: str, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        rlmeta.train(config(env), tmp_path / name)
        rows = read_metrics(tmp_path / name / METRICS_FILE)
        runs.append([(row["return/step_0"], row["return/step_1"], row["kl"]) for row in rows])
    assert runs[0] == runs[1] and len(runs[0]) == 2
    assert runs[0][0] != runs[0][1]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("NoGetTaskEnv", "NoGetTaskEnv is not a task environment: missing get_task"),
        ("SetTaskWithoutArgumentEnv",
         r"SetTaskWithoutArgumentEnv.set_task\(\) does not fit the task protocol; expected "
         r"set_task\(task\)"),
        ("SampleTasksWithExtraArgumentEnv",
         r"sample_tasks\(n_tasks, rng, low\) does not fit the task protocol; "
         r"expected sample_tasks\(n, rng\) or sample_tasks\(n\)"),
    ],
)
def test_an_env_that_does_not_fit_is_named_before_anything_is_written(
    env: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        rlmeta.train(config(env), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_wrong_task_count_is_named(tmp_path: Path) -> None:
    expected = r"WrongCountEnv: sample_tasks\(3\) returned 4 tasks; expected a list of 3"
    with pytest.raises(ValueError, match=expected):
        rlmeta.train(config("WrongCountEnv"), tmp_path / "run")


def test_the_cli_reports_a_mismatched_method_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("algorithm: maml\nworkers: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "rlmeta.run.cli", "train", str(path), "--run-dir",
         str(tmp_path / "run"), "--set", f"env={__name__}:SetTaskWithoutArgumentEnv"],
        capture_output=True, text=True, timeout=300,
        # The CLI never imports from the current directory implicitly: the env's module is found
        # on PYTHONPATH, as a user's own package would be.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("rlmeta train: error: ")
    assert "SetTaskWithoutArgumentEnv.set_task() does not fit the task protocol" in errors[0]
    assert not (tmp_path / "run").exists()
