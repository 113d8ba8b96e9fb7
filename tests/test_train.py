"""The training driver with a fake algorithm and a fake task env on the local runtime.

The fakes live here and are reached the way a user's own code is: the env as `module:Class`,
the algorithm by pointing `rlmeta.run.build.ALGORITHM_CLASSES["maml"]` at
`test_train:FakeAlgorithm`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmeta import checkpoint
from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.config_io import config_from_dict
from rlmeta.distributed.local import LocalRuntime
from rlmeta.maml.config import MAMLConfig
from rlmeta.rollout import sample_rollout
from rlmeta.run import build
from rlmeta.run.train import CONFIG_FILE, draw_task_specs, train
from rlmeta.run_dir import RunDirError
from rlmeta.warm_start import weights_digest

HORIZON = 3


class TargetEnv(gym.Env):
    """One step of a 1-D action per time step; reward -|action - target|. Tasks: targets."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self) -> None:
        self.task: dict[str, Any] = {"target": 0.0}
        self.t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"target": float(x)} for x in rng.uniform(-1.0, 1.0, n)]

    def set_task(self, task: dict[str, Any]) -> None:
        self.task = task

    def get_task(self) -> dict[str, Any]:
        return self.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray):
        if self.task.get("explode"):
            raise RuntimeError("boom")
        self.t += 1
        reward = -abs(float(action[0]) - self.task["target"])
        return np.zeros(1, np.float32), reward, False, self.t >= HORIZON, {"success": reward > -0.5}


class ExplodingEnv(TargetEnv):
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{**task, "explode": True} for task in super().sample_tasks(n, rng)]


class _Actor:
    def __init__(self, mean: float, generator: torch.Generator) -> None:
        self.mean, self.generator = mean, generator

    def start_sequences(self, slots: np.ndarray) -> None:
        pass

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        noise = torch.randn(len(observations), 1, generator=self.generator).numpy()
        return (self.mean + 0.3 * noise).astype(np.float32), np.zeros(len(observations), np.float32)


class FakeAlgorithm:
    """A one-number 'policy' (the action mean) learned with Adam; the update also draws from
    torch's global RNG, as a minibatch shuffle would, so resume must restore that RNG too.
    It stands in for MAML, so it reads the `maml` section and answers the driver as MAML does."""

    config_section = "maml"
    settings_model = MAMLConfig
    evaluation_axis = "inner gradient steps"

    @classmethod
    def meta_batch_size(cls, config) -> int:
        return config.maml.meta_batch_size

    @classmethod
    def best_metric(cls, config) -> str:
        return f"return/step_{config.maml.inner_steps}"

    @classmethod
    def progress_keys(cls, config) -> tuple[str, ...]:
        return ("return/step_0", cls.best_metric(config))

    @classmethod
    def tasks_per_call(cls, config) -> int:
        return 1

    @classmethod
    def default_adapt_steps(cls, config) -> int:
        return max(3, config.maml.inner_steps)

    @classmethod
    def with_eval_actions(cls, config, actions: str):
        raise ValueError("actions applies to RL² runs")

    def __init__(self, config, observation_space, action_space, device: str = "cpu") -> None:
        self.config = config
        self.mean = torch.nn.Parameter(torch.randn(1))
        self.optimizer = torch.optim.Adam([self.mean], lr=0.1)
        self.updates = 0

    def get_weights(self) -> Weights:
        return {"mean": self.mean.detach().clone()}

    def set_weights(self, weights: Weights) -> None:
        with torch.no_grad():
            self.mean.copy_(weights["mean"])

    def _rollout_return(self, envs, spec: TaskSpec, mean: float, version: int = 0):
        generator = torch.Generator().manual_seed(spec.seed)
        rollout = sample_rollout(
            envs, _Actor(mean, generator), num_sequences=2, seed=spec.seed, task=spec.task,
            weights_version=version,
        )
        return rollout, rollout.mean_return()

    def run_task(self, envs, spec: TaskSpec, weights_version: int) -> TaskResult:
        rollout, ret = self._rollout_return(envs, spec, float(self.mean.detach()), weights_version)
        return TaskResult(
            spec.index, spec.task, spec.seed, weights_version, [rollout],
            {"return/step_0": ret - 1.0, "return/step_1": ret}, rollout.num_steps,
        )

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        targets = torch.tensor([r.task["target"] for r in results])
        loss = ((self.mean - targets) ** 2).mean() + 0.01 * torch.randn(()) * self.mean.sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        # A per-update "env_steps" must not shadow the driver's cumulative count.
        return {"loss": float(loss.detach()), "env_steps": -1.0}

    def evaluate_task(self, envs, spec: TaskSpec, adapt_steps: int) -> dict[str, float]:
        # "Adaptation" moves the mean halfway to the target per step.
        mean, out = float(self.mean.detach()), {}
        for k in range(adapt_steps + 1):
            rollout, out[f"return/step_{k}"] = self._rollout_return(envs, spec, mean)
            out[f"success/step_{k}"] = float(rollout.successes.mean())
            mean += 0.5 * (spec.task["target"] - mean)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.get_weights(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]


@pytest.fixture(autouse=True)
def fake_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(build.ALGORITHM_CLASSES, "maml", f"{__name__}:FakeAlgorithm")


def make_config(**overrides: Any):
    data = {
        "algorithm": "maml",
        "env": f"{__name__}:TargetEnv",
        "iterations": 6,
        "checkpoint_every": 2,
        "keep_checkpoints": 2,
        "workers": 0,
        "envs_per_worker": 2,
        "maml": {"meta_batch_size": 3},
        "seed": 5,
    }
    data.update(overrides)
    return config_from_dict(data)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_state(run_dir: Path) -> dict:
    return checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))


def test_a_run_writes_config_metrics_and_checkpoints(tmp_path: Path) -> None:
    config = make_config()
    summary = train(config, tmp_path)
    assert (tmp_path / CONFIG_FILE).exists()
    logged = rows(tmp_path)
    assert [row["iteration"] for row in logged] == list(range(6))
    # 3 tasks x 2 episodes x HORIZON steps per iteration, cumulative.
    assert [row["env_steps"] for row in logged] == [18 * (i + 1) for i in range(6)]
    for key in ("return/step_0", "return/step_1", "loss", "weights_version", "staleness",
                "env_steps_per_s", "runtime/sampling_s", "runtime/learner_s", "time_s"):
        assert key in logged[0], key
    assert [row["weights_version"] for row in logged] == [1, 2, 3, 4, 5, 6]
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["ckpt_000004.pt", "ckpt_000006.pt"]  # keep_checkpoints=2
    state = final_state(tmp_path)
    assert state["iteration"] == 6 and state["env_steps"] == 108
    assert state["runtime"]["weights_version"] == 6
    best = checkpoint.load_checkpoint(checkpoint.best_path(tmp_path))
    best_value = max(row["return/step_1"] for row in logged)
    assert best["best_score"] == pytest.approx(best_value) == summary["best_score"]
    best_row = next(row for row in logged if row["return/step_1"] == best_value)
    assert best["iteration"] == best_row["iteration"] + 1


def test_stopped_and_resumed_equals_straight_through(tmp_path: Path) -> None:
    config = make_config(iterations=5)
    train(config, tmp_path / "straight")
    train(config, tmp_path / "stopped", stop_after=3)
    assert final_state(tmp_path / "stopped")["iteration"] == 3
    train(config, tmp_path / "stopped", resume=True)
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "stopped")
    assert torch.equal(a["runtime"]["algorithm"]["weights"]["mean"],
                       b["runtime"]["algorithm"]["weights"]["mean"])
    assert torch.equal(
        a["runtime"]["algorithm"]["optimizer"]["state"][0]["exp_avg"],
        b["runtime"]["algorithm"]["optimizer"]["state"][0]["exp_avg"],
    )
    assert a["env_steps"] == b["env_steps"] and a["rng_state"] == b["rng_state"]
    drop = ("time_s", "env_steps_per_s", "iteration_s")
    strip = lambda row: {k: v for k, v in row.items() if k not in drop and "runtime/" not in k}
    assert [strip(r) for r in rows(tmp_path / "straight")] == [
        strip(r) for r in rows(tmp_path / "stopped")
    ]


def test_resume_after_a_crash_truncates_logs_past_the_checkpoint(tmp_path: Path) -> None:
    config = make_config(iterations=4, checkpoint_every=2)
    train(config, tmp_path / "straight")
    train(config, tmp_path / "crashed", stop_after=3)  # checkpoints at 2 and 3
    # A crash after iteration 3 was logged but before its checkpoint was written:
    checkpoint.checkpoint_path(tmp_path / "crashed", 3).unlink()
    train(config, tmp_path / "crashed", resume=True)
    assert [r["iteration"] for r in rows(tmp_path / "crashed")] == [0, 1, 2, 3]
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "crashed")
    assert torch.equal(a["runtime"]["algorithm"]["weights"]["mean"],
                       b["runtime"]["algorithm"]["weights"]["mean"])


def test_async_mode_draws_the_same_tasks_and_reports_staleness(tmp_path: Path) -> None:
    sync = make_config(iterations=4)
    train(sync, tmp_path / "sync")
    asynchronous = make_config(iterations=4, mode="async", max_staleness=1)
    train(asynchronous, tmp_path / "async")
    logged = rows(tmp_path / "async")
    assert [row["staleness"] for row in logged] == [0, 1, 1, 1]
    # Same task RNG stream: the first batch is sampled with the same weights in both modes.
    assert logged[0]["return/step_1"] == rows(tmp_path / "sync")[0]["return/step_1"]
    assert final_state(tmp_path / "async")["env_steps"] == final_state(tmp_path / "sync")[
        "env_steps"
    ]


def test_async_checkpoint_rewinds_the_task_rng_to_the_batch_in_flight(tmp_path: Path) -> None:
    config = make_config(iterations=3, mode="async", max_staleness=1, checkpoint_every=1)
    train(config, tmp_path, stop_after=1)
    state = final_state(tmp_path)
    # After one iteration the second batch was already drawn; the checkpoint's RNG precedes it.
    rng = np.random.default_rng(config.seed)
    env = TargetEnv()
    draw_task_specs(env, 3, rng)
    assert state["rng_state"] == rng.bit_generator.state


def test_same_seed_same_run_and_specs_deterministic(tmp_path: Path) -> None:
    config = make_config(iterations=2)
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    assert [r["return/step_1"] for r in rows(tmp_path / "a")] == [
        r["return/step_1"] for r in rows(tmp_path / "b")
    ]
    first = draw_task_specs(TargetEnv(), 4, np.random.default_rng(1))
    second = draw_task_specs(TargetEnv(), 4, np.random.default_rng(1))
    assert first == second
    assert [s.index for s in first] == [0, 1, 2, 3]
    assert len({s.seed for s in first}) == 4


def test_refuses_to_overwrite_or_resume_with_another_config(tmp_path: Path) -> None:
    config = make_config(iterations=2)
    train(config, tmp_path)
    with pytest.raises(RunDirError, match="already has checkpoints; continue it with"):
        train(config, tmp_path)
    with pytest.raises(ValueError, match=r"config differs .* \(keys: iterations\)"):
        train(make_config(iterations=3), tmp_path, resume=True)


def test_a_meta_batch_lost_entirely_to_env_errors_stops_the_run(tmp_path: Path) -> None:
    config = make_config(env=f"{__name__}:ExplodingEnv", on_env_error="drop")
    with pytest.raises(RuntimeError, match="every task of the meta-batch was dropped"):
        train(config, tmp_path)


def test_a_run_can_start_from_another_runs_weights(tmp_path: Path) -> None:
    train(make_config(iterations=4), tmp_path / "first")
    first = final_state(tmp_path / "first")
    source = checkpoint.latest_checkpoint(tmp_path / "first")
    config = make_config(iterations=3, seed=6, init_from=str(tmp_path / "first"))
    train(config, tmp_path / "straight")
    train(config, tmp_path / "warm", stop_after=1)

    # The first meta-batch was sampled with the starting weights: the same tasks sampled here
    # with them give the return the run logged, and a run from scratch logs another.
    spaces = (TargetEnv.observation_space, TargetEnv.action_space)
    runtime = LocalRuntime(config, build.algorithm_factory(config, *spaces),
                           build.env_factory(config))
    runtime.algorithm.set_weights(first["runtime"]["algorithm"]["weights"])
    specs = draw_task_specs(TargetEnv(), 3, np.random.default_rng(6))
    expected = np.mean([r.metrics["return/step_1"] for r in runtime.collect(runtime.submit(specs))])
    assert rows(tmp_path / "warm")[0]["return/step_1"] == pytest.approx(expected, abs=1e-9)
    train(make_config(iterations=1, seed=6), tmp_path / "scratch")
    assert rows(tmp_path / "scratch")[0]["return/step_1"] != pytest.approx(expected, abs=1e-3)

    record = {"checkpoint": str(source), "env_steps": first["env_steps"],
              "weights_sha256": weights_digest(first["runtime"]["algorithm"]["weights"])}
    assert final_state(tmp_path / "warm")["init_from"] == record
    # Resume carries the weights in its own checkpoints: the source may be gone by then.
    shutil.rmtree(tmp_path / "first")
    train(config, tmp_path / "warm", resume=True)
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "warm")
    assert torch.equal(a["runtime"]["algorithm"]["weights"]["mean"],
                       b["runtime"]["algorithm"]["weights"]["mean"])
    assert b["init_from"] == record
    # Started from in turn, a warm-started run passes on every env step behind it.
    train(make_config(iterations=1, init_from=str(tmp_path / "warm")), tmp_path / "chain")
    chained = final_state(tmp_path / "chain")["init_from"]
    assert chained["env_steps"] == b["env_steps"] + first["env_steps"]


def test_a_start_that_does_not_fit_stops_before_writing_the_run(tmp_path: Path) -> None:
    def saved(name: str, algorithm: str, mean: torch.Tensor) -> Path:
        state = checkpoint.make_checkpoint(
            {"algorithm": algorithm}, {"algorithm": {"weights": {"mean": mean}}}, 1, 10, {})
        return checkpoint.save_checkpoint(state, tmp_path / name)

    cases = [
        (saved("wide.pt", "maml", torch.zeros(2)), "misshapen mean (2,) (here (1,))"),
        (saved("rl2.pt", "rl2", torch.zeros(1)), "a checkpoint of algorithm 'rl2'; expected one "
                                                 "of 'maml'"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            train(make_config(init_from=str(path)), tmp_path / "run")
        assert not (tmp_path / "run").exists()
    missing = "init_from: .*missing.pt' is neither a run directory"
    with pytest.raises(checkpoint.CheckpointError, match=missing):
        train(make_config(init_from=str(tmp_path / "missing.pt")), tmp_path / "run")
    assert not (tmp_path / "run").exists()
