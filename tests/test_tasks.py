"""The task protocol helpers and `make_task_env`."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from rlmeta import tasks
from rlmeta_envs import FAMILIES, describe_families


class NotATaskEnv(gym.Env):
    """A valid gymnasium env that lacks the task protocol."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)


class ScaledBandit(gym.Env):
    """A user's own task env, found by `module:Class` (this test module)."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.task = {"p": 0.5}

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict]:
        return [{"p": float(p)} for p in rng.uniform(size=n)]

    def set_task(self, task: dict) -> None:
        self.task = task

    def get_task(self) -> dict:
        return self.task


def test_make_task_env_from_id_passes_kwargs_and_skips_passive_checker() -> None:
    env = tasks.make_task_env("rlmeta/Bandit-v0", arms=3)
    assert env.action_space.n == 3
    wrapper = env
    names = []
    while isinstance(wrapper, gym.Wrapper):
        names.append(type(wrapper).__name__)
        wrapper = wrapper.env
    assert "PassiveEnvChecker" not in names


def test_make_task_env_from_module_class() -> None:
    env = tasks.make_task_env(f"{__name__}:ScaledBandit", scale=2.5)
    assert isinstance(env, ScaledBandit) and env.scale == 2.5
    task = tasks.sample_tasks(env, 1, np.random.default_rng(0))[0]
    tasks.set_task(env, task)
    assert tasks.get_task(env) == task


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("rlmeta/Nope-v0", {}, "unknown env id 'rlmeta/Nope-v0'; expected a registered"),
        ("no_such_module_xyz:Env", {}, "cannot import module 'no_such_module_xyz'"),
        ("rlmeta_envs.bandit:Missing", {}, "has no gymnasium.Env subclass 'Missing'"),
        ("rlmeta_envs.bandit:", {}, "must be 'module:Class'"),
        (f"{__name__}:NotATaskEnv", {}, "not a task environment: missing sample_tasks"),
        ("rlmeta/Bandit-v0", {"arm": 3}, "rejected its kwargs {'arm': 3}"),
        ("", {}, "env must be a gymnasium id or 'module:Class'"),
    ],
)
def test_make_task_env_errors_name_the_bad_thing(spec: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        tasks.make_task_env(spec, **kwargs)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_sample_tasks_helper_checks_count_and_is_deterministic() -> None:
    env = tasks.make_task_env("rlmeta/Navigation2D-v0")
    a = tasks.sample_tasks(env, 5, np.random.default_rng(9))
    assert a == tasks.sample_tasks(env, 5, np.random.default_rng(9))
    with pytest.raises(ValueError, match="number of tasks must be >= 1"):
        tasks.sample_tasks(env, 0, np.random.default_rng(9))


def test_set_task_reaches_through_wrappers() -> None:
    env = gym.wrappers.RecordEpisodeStatistics(tasks.make_task_env("rlmeta/Navigation2D-v0"))
    tasks.set_task(env, {"goal": [0.25, -0.25]})
    assert tasks.get_task(env) == {"goal": [0.25, -0.25]}
    assert tasks.describe_task(tasks.get_task(env)) == "{goal=[ 0.25,-0.25]}"


def test_families_describe_every_registered_id() -> None:
    registered = {i for i in gym.registry if i.startswith("rlmeta/")}
    assert registered == set(FAMILIES)
    rows = describe_families()
    assert {row[0] for row in rows} == registered
    for _, description, params in rows:
        assert description and "\n" not in description and params


def test_package_imports_from_outside_the_checkout(tmp_path) -> None:
    code = (
        "import gymnasium, rlmeta, rlmeta_envs, importlib.util\n"
        "env = gymnasium.make('rlmeta/HalfCheetahVel-v0')\n"
        "env.reset(seed=0)\n"
        "import pathlib\n"
        "root = pathlib.Path(rlmeta.__file__).resolve().parents[1]\n"
        "spec = importlib.util.find_spec('envs')\n"
        "assert spec is None or root not in pathlib.Path(str(spec.origin)).parents, spec\n"
        "assert pathlib.Path(rlmeta_envs.__file__).resolve().parent == root / 'envs'\n"
        "print('ok', rlmeta_envs.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok ")
