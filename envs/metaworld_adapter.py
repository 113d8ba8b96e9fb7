"""Meta-World v3 benchmarks (Yu et al., CoRL 2019) behind the task protocol.

ML1, ML10 and ML45 are the paper's; ML25 (25 train classes, 5 test) is Meta-World 3's addition.
In Meta-World 3.1.1 ML25 lists basketball-v3 among both its train and its test classes, so its
test split is not wholly unseen; it is served as Meta-World defines it.

A task is plain data, {"env_name": "reach-v3", "index": i}: the i-th of that env's tasks in the
benchmark's `train_tasks` or `test_tasks`, built with a fixed seed so every process resolves the
same index to the same goal (built once per machine: see `_benchmark`). One Meta-World env is
kept per env class and switched to when a task names it. Meta-World's own reset ignores its
seed; here the wrapped env's RNG is drawn from this env's `np_random`, so a seeded reset
reproduces.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import pickle
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ._checks import check_render_mode, short_repr, task_error, task_fields

BENCHMARKS = ("ML1", "ML10", "ML25", "ML45")
SPLITS = ("train", "test")


CACHE_ENV = "RLMETA_METAWORLD_CACHE"
"""Directory of the benchmark-task cache (default ~/.cache/rlmeta/metaworld); "off" disables it."""


def _cache_path(name: str, env_name: str | None, seed: int) -> Path | None:
    setting = os.environ.get(CACHE_ENV, "")
    if setting == "off":
        return None
    root = Path(setting) if setting else Path.home() / ".cache" / "rlmeta" / "metaworld"
    version = importlib.metadata.version("metaworld")
    return root / f"{name}-{env_name or 'all'}-seed{seed}-metaworld{version}.json"


def _plain_task(task: Any) -> dict[str, Any]:
    """A Meta-World task as JSON data: its goal vector and keyword values, without the env
    class (known from the benchmark by name), so reading the cache back runs no pickle."""
    data = pickle.loads(task.data)  # built by Meta-World in this process, not read from disk
    data.pop("env_cls")
    data["rand_vec"] = [float(x) for x in data["rand_vec"]]
    return {"env_name": task.env_name, "data": data}


def _task_from_plain(plain: dict[str, Any], classes: dict[str, Any]) -> Any:
    from metaworld.types import Task

    data = dict(plain["data"])
    data["rand_vec"] = np.asarray(data["rand_vec"], dtype=np.float64)
    data["env_cls"] = classes[plain["env_name"]]
    return Task(env_name=plain["env_name"], data=pickle.dumps(data))


@functools.lru_cache(maxsize=4)
def _benchmark(name: str, env_name: str | None, seed: int) -> dict[str, list[Any]]:
    """The benchmark's Meta-World Task objects, {"train": [...], "test": [...]}, once per process.

    Building them costs seconds (ML1) to a minute (ML45), because Meta-World resets every env 50
    times to draw its goals, and every rollout worker needs them. They depend only on the
    benchmark, the seed and Meta-World's version, so the first process on a machine saves them
    as JSON (written atomically) and the others load them (a few ms)."""
    path = _cache_path(name, env_name, seed)
    if path is not None and path.exists():
        plain = json.loads(path.read_text())
        return {split: [_task_from_plain(task, _env_classes(name, env_name, split))
                        for task in plain[split]] for split in SPLITS}
    import metaworld

    logging.getLogger(__name__).info("building Meta-World %s (seed %d)", name, seed)
    if name == "ML1":
        bench = metaworld.ML1(env_name, seed=seed)
    else:
        bench = getattr(metaworld, name)(seed=seed)
    tasks = {"train": list(bench.train_tasks), "test": list(bench.test_tasks)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        plain = {split: [_plain_task(task) for task in tasks[split]] for split in SPLITS}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as file:
            json.dump(plain, file)
        os.replace(file.name, path)
    return tasks


def _env_classes(benchmark: str, env_name: str | None, split: str) -> OrderedDict:
    """Env classes of a split, known without building the benchmark's tasks."""
    from metaworld import env_dict

    if benchmark == "ML1":
        return OrderedDict([(env_name, env_dict.ALL_V3_ENVIRONMENTS[env_name])])
    return getattr(env_dict, f"{benchmark}_V3")[split]


def _widen_constant_dims(space: gym.spaces.Box) -> gym.spaces.Box:
    """The goal slots of ML observations are always zero (low == high == 0); a zero-width
    interval tells a policy nothing and fails gymnasium's checker, so they become unbounded."""
    low, high = space.low.copy(), space.high.copy()
    constant = low == high
    low[constant], high[constant] = -np.inf, np.inf
    return gym.spaces.Box(low, high, dtype=space.dtype)


class MetaWorldEnv(gym.Env):
    """Adapter over a Meta-World ML1 / ML10 / ML25 / ML45 split with plain-data tasks.

    `horizon` (default 500, the benchmark's) truncates episodes; `info["success"]` is
    Meta-World's. Call `reset()` after `set_task` before stepping. `render_mode="rgb_array"`
    renders through MuJoCo from Meta-World's corner camera (headless: `MUJOCO_GL=osmesa`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}
    RENDER_CAMERA = "corner"
    # Evaluation picks the split (`split` keyword) for held-out tasks: the benchmark's own.
    task_splits = SPLITS
    # `rlmeta evaluate` also reports Meta-World's own protocol on its official vector envs.
    evaluation_protocol = "rlmeta_envs.metaworld_protocol:evaluate_protocol"

    def __init__(
        self,
        benchmark: str = "ML1",
        env_name: str | None = None,
        split: str = "train",
        horizon: int = 500,
        benchmark_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        from metaworld import env_dict

        check_render_mode(render_mode, self.metadata)
        self.render_mode = render_mode
        if benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}, got {benchmark!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be train or test, got {split!r}")
        if benchmark == "ML1" and env_name not in env_dict.ALL_V3_ENVIRONMENTS:
            raise ValueError(
                f"env_name must name a Meta-World v3 env for ML1 (e.g. 'reach-v3'), "
                f"got {env_name!r}"
            )
        if benchmark != "ML1" and env_name is not None:
            raise ValueError(f"env_name is only for ML1; {benchmark} has its own envs")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        self.benchmark, self.env_name, self.split = benchmark, env_name, split
        self.horizon = horizon
        self.benchmark_seed = benchmark_seed
        self._classes = _env_classes(benchmark, env_name, split)
        self._envs: dict[str, Any] = {}
        self._task: dict[str, Any] | None = None
        self._env: Any = None
        self._needs_reset = True
        self._t = 0
        # All v3 envs share the 39-d observation and 4-d action; the first class defines them
        # and every later class is checked against them in _env_for.
        first = self._env_for(next(iter(self._classes)))
        self._inner_spaces = (first.observation_space, first.action_space)
        self.observation_space = _widen_constant_dims(first.observation_space)
        self.action_space = first.action_space

    # Benchmark data ---------------------------------------------------------------------------
    def _split_tasks(self) -> dict[str, list[Any]]:
        """Meta-World Task objects of this split, grouped by env name in benchmark order."""
        if not hasattr(self, "_tasks_by_name"):
            bench = _benchmark(self.benchmark, self.env_name, self.benchmark_seed)
            grouped: dict[str, list[Any]] = {}
            for task in bench[self.split]:
                grouped.setdefault(task.env_name, []).append(task)
            self._tasks_by_name = grouped
        return self._tasks_by_name

    def _env_for(self, env_name: str) -> Any:
        env = self._envs.get(env_name)
        if env is None:
            if self.render_mode is None:
                env = self._classes[env_name]()
            else:
                env = self._classes[env_name](
                    render_mode=self.render_mode, camera_name=self.RENDER_CAMERA
                )
            env.max_path_length = max(self.horizon, env.max_path_length)
            if hasattr(self, "_inner_spaces") and (
                (env.observation_space, env.action_space) != self._inner_spaces
            ):
                raise ValueError(
                    f"Meta-World env {env_name!r} has spaces {env.observation_space}, "
                    f"{env.action_space}; expected those of the first env of the split"
                )
            self._envs[env_name] = env
        return env

    # Task protocol ---------------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """As many tasks of every env class as `n` allows, in random order: `n // classes` of
        each, one more of `n % classes` classes drawn at random; within a class, goals without
        replacement while there are enough. A meta-batch divisible by the classes (ML10: 20,
        ML45: 45) then holds every class equally often, as garage's Meta-World task sampler
        draws them, instead of a class missing from one batch and doubled in the next."""
        grouped = self._split_tasks()
        names = list(grouped)
        counts = np.full(len(names), n // len(names))
        counts[rng.choice(len(names), size=n % len(names), replace=False)] += 1
        picks = []
        for name, count in zip(names, counts, strict=True):
            goals = len(grouped[name])
            picks += [(name, int(i)) for i in rng.choice(goals, size=count, replace=count > goals)]
        return [{"env_name": picks[p][0], "index": picks[p][1]} for p in rng.permutation(n)]

    def set_task(self, task: Any) -> None:
        tasks = self._split_tasks()
        expected = (
            f"keys 'env_name' (one of {short_repr(list(tasks))}) and 'index' (an int in "
            f"[0, tasks of that env in the {self.benchmark} {self.split} split))"
        )
        fields = task_fields(task, ("env_name", "index"), expected)
        name, index = fields["env_name"], fields["index"]
        if (
            name not in tasks
            or isinstance(index, bool)
            or not isinstance(index, int | np.integer)
            or not 0 <= index < len(tasks[name])
        ):
            raise task_error(expected, task)
        env = self._env_for(name)
        env.set_task(tasks[name][int(index)])
        self._env = env
        self._task = {"env_name": name, "index": int(index)}
        self._needs_reset = True

    def get_task(self) -> dict[str, Any]:
        # The default task is picked on first use, not in __init__, so that making the env
        # does not build the benchmark (seconds to a minute) before anyone needs its tasks.
        if self._task is None:
            self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])
        return dict(self._task)

    # Gymnasium API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self._task is None:
            self.get_task()
        # Meta-World's reset takes no seed; its RNG comes from ours so seeds reproduce.
        self._env.seed(int(self.np_random.integers(2**31 - 1)))
        obs, info = self._env.reset()
        self._t = 0
        self._needs_reset = False
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() after set_task() (or at the horizon) before step()")
        obs, reward, terminated, _, info = self._env.step(action)
        self._t += 1
        truncated = self._t >= self.horizon
        self._needs_reset = truncated or bool(terminated)
        return obs, float(reward), bool(terminated), truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._env is None:
            return None
        # Meta-World's corner camera renders the scene upside down.
        return np.ascontiguousarray(self._env.render()[::-1])

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    # Pickling: rebuild from constructor arguments and the task, never ship MuJoCo state.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "kwargs": {
                "benchmark": self.benchmark,
                "env_name": self.env_name,
                "split": self.split,
                "horizon": self.horizon,
                "benchmark_seed": self.benchmark_seed,
                "render_mode": self.render_mode,
            },
            "task": self._task,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["kwargs"])
        if state["task"] is not None:
            self.set_task(state["task"])
