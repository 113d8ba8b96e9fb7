"""The Python API: a trained checkpoint driven through a hand-written Gymnasium loop gets
`rlmeta evaluate`'s returns; `adapt` on sampled or on the loop's own episodes; `train`'s
callbacks and overrides; `eval_every`; `import rlmeta` stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_train import TargetEnv

import rlmeta
from rlmeta import checkpoint, tasks
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run.evaluation import evaluation_specs

ROOT = Path(__file__).resolve().parent.parent
EVAL_TASKS = 3

# One env per worker: `rlmeta evaluate` then steps one env at a time, as a plain loop does.
MAML = {
    "algorithm": "maml", "env": "rlmeta/Navigation2D-v0", "iterations": 2, "workers": 0,
    "envs_per_worker": 1, "eval_tasks": EVAL_TASKS, "policy": {"hidden_sizes": [16]},
    "maml": {"meta_batch_size": 2, "episodes_per_task": 2, "eval_inner_lrs": [0.1, 0.05]},
}
RL2 = {
    "algorithm": "rl2", "env": "rlmeta/Bandit-v0", "iterations": 2, "workers": 0,
    "envs_per_worker": 1, "eval_tasks": EVAL_TASKS, "policy": {"hidden_sizes": []},
    "rl2": {"meta_batch_size": 2, "trials_per_task": 2, "episodes_per_trial": 5,
            "hidden_size": 8},
}


def run_episode(env: gym.Env, agent: Any, seed: int | None) -> float:
    """One episode of the plain loop the docs show; returns its undiscounted return."""
    observation, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        observation, reward, terminated, truncated, _ = env.step(agent.act(observation))
        agent.observe(reward, terminated, truncated)
        total += float(reward)
        if terminated or truncated:
            return total


def evaluate_means(run_dir: Path, **options: Any) -> dict[str, float]:
    report = rlmeta.evaluate(run_dir, out_dir=run_dir / "eval", **options)
    return {s.key: s.mean for s in report.summaries if s.policy == "meta-learned"}


def held_out_specs(config: dict[str, Any]) -> list[Any]:
    env = gym.make(config["env"])
    try:
        return evaluation_specs(rlmeta.make_config(config), env, EVAL_TASKS, "test")
    finally:
        env.close()


@pytest.fixture(scope="module")
def maml_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("maml") / "run"
    rlmeta.train(MAML, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def rl2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("rl2") / "run"
    rlmeta.train(RL2, run_dir)
    return run_dir


def test_maml_loop_gets_the_returns_of_rlmeta_evaluate(maml_run: Path) -> None:
    steps, episodes = 2, MAML["maml"]["episodes_per_task"]
    expected = evaluate_means(maml_run, adapt_steps=steps)
    policy, env = rlmeta.load(maml_run), gym.make(MAML["env"])
    returns: dict[str, list[float]] = {}
    for spec in held_out_specs(MAML):
        tasks.set_task(env, spec.task)
        agent = policy.reset(seed=spec.seed)
        for k in range(steps + 1):
            stage = [run_episode(env, agent, agent.episode_seed(j)) for j in range(episodes)]
            returns.setdefault(f"return/step_{k}", []).append(float(np.mean(stage)))
            if k < steps:
                agent = agent.adapt()  # one inner step on the episodes the loop just ran
    got = {key: float(np.mean(values)) for key, values in returns.items()}
    assert got.keys() == {k for k in expected if k.startswith("return/")}
    for key, value in got.items():
        assert value == pytest.approx(expected[key], rel=1e-6), key
    assert got["return/step_0"] != pytest.approx(got["return/step_2"], rel=1e-6)


def test_rl2_loop_gets_the_returns_of_rlmeta_evaluate(rl2_run: Path) -> None:
    trials, episodes = RL2["rl2"]["trials_per_task"], RL2["rl2"]["episodes_per_trial"]
    expected = evaluate_means(rl2_run)
    policy, env = rlmeta.load(rl2_run), gym.make(RL2["env"])
    per_task = []
    for spec in held_out_specs(RL2):
        agent = policy.adapt(env, task=spec.task).reset(seed=spec.seed)
        rows = []
        for trial in range(trials):
            if trial:
                agent.reset()  # the next trial: hidden state from zero, same action stream
            rows.append([run_episode(env, agent, agent.episode_seed()) for _ in range(episodes)])
        per_task.append(np.array(rows))
    got = {"return/trial": float(np.mean([r.sum(axis=1).mean() for r in per_task]))}
    for i in range(episodes):
        got[f"return/episode_{i}"] = float(np.mean([r[:, i].mean() for r in per_task]))
    for key, value in got.items():
        assert value == pytest.approx(expected[key], rel=1e-6), key


def test_maml_adapt_on_sampled_and_on_passed_episodes_agree(maml_run: Path) -> None:
    policy, env = rlmeta.load(maml_run), gym.make(MAML["env"])
    task = tasks.sample_tasks(env, 1, np.random.default_rng(5))[0]
    sampled = policy.reset(seed=7).adapt(env, task=task, steps=1)

    agent = policy.reset(seed=7)
    for j in range(MAML["maml"]["episodes_per_task"]):
        run_episode(env, agent, agent.episode_seed(j))
    recorded = agent.episodes
    from_loop = agent.adapt(episodes=recorded)
    assert sampled.steps == from_loop.steps == 1
    theta = policy.reset().params
    for name, value in sampled.params.items():
        torch.testing.assert_close(value, from_loop.params[name])
        assert not torch.equal(value, theta[name])
    assert policy.steps == 0  # adapt returned a new policy; the loaded one is still θ
    observation, _ = env.reset(seed=0)
    mean = policy.reset(seed=3).act(observation, deterministic=True)
    policy.observe(0.0, False, False)
    assert np.array_equal(mean, policy.act(observation, deterministic=True))
    policy.observe(0.0, True, False)
    assert len(policy.episodes) == 1
    with pytest.raises(ValueError, match="either an env"):
        agent.adapt(env, episodes=recorded)
    with pytest.raises(ValueError, match="no episodes"):
        policy.reset().adapt(episodes=[])


def test_rl2_hidden_state_carries_across_episodes_and_resets_per_trial(rl2_run: Path) -> None:
    policy, env = rlmeta.load(rl2_run), gym.make(RL2["env"])
    agent = policy.adapt(env).reset(seed=0)
    assert torch.count_nonzero(agent.hidden_state) == 0
    run_episode(env, agent, agent.episode_seed())
    carried = agent.hidden_state
    assert torch.count_nonzero(carried) > 0
    assert agent.episode_seed() is None  # later episodes continue the env's RNG
    agent.reset()
    assert torch.count_nonzero(agent.hidden_state) == 0 and agent.episode_seed() == 1
    observation, _ = env.reset(seed=0)
    agent.act(observation)
    with pytest.raises(RuntimeError, match="observe"):
        agent.act(observation)
    with pytest.raises(ValueError, match="hidden state"):
        agent.adapt(episodes=agent.episodes)


def test_train_with_overrides_and_a_callback_that_stops_then_resume(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = []

    def stop_after_two(row: dict[str, Any]) -> bool:
        rows.append(row)
        return row["iteration"] < 1

    run_dir, overrides = tmp_path / "run", {"iterations": 4, "eval_every": 1}
    last = rlmeta.train(MAML, run_dir, callbacks=[stop_after_two], overrides=overrides)
    assert [row["iteration"] for row in rows] == [0, 1] and last["iteration"] == 1
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))["iteration"] == 2
    config = rlmeta.make_config(run_dir / "config.yaml")
    assert config.iterations == 4
    rlmeta.train(config, run_dir, callbacks=[rows.append], resume=True)
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    # Stopped by a callback and resumed, the run (held-out evaluations included) is the
    # uninterrupted one.
    rlmeta.train(MAML, tmp_path / "whole", overrides=overrides)
    whole = read_metrics(tmp_path / "whole" / METRICS_FILE)
    learned = [[{k: v for k, v in row.items() if k.startswith(("eval/", "return/", "kl"))}
                for row in run] for run in (whole, read_metrics(run_dir / METRICS_FILE))]
    assert learned[0] == learned[1] and "eval/return/step_1" in learned[0][3]
    with pytest.raises(ValueError, match="maml.inner_lrr"):
        rlmeta.make_config(MAML, overrides={"maml.inner_lrr": 0.1})


def test_eval_every_logs_rlmeta_evaluate_and_picks_best_by_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rlmeta.train(MAML, run_dir, overrides={"iterations": 4, "eval_every": 2,
                                           "checkpoint_every": 2})
    rows = read_metrics(run_dir / METRICS_FILE)
    evaluated = [row["iteration"] for row in rows if "eval/return/step_1" in row]
    assert evaluated == [1, 3]
    # The last evaluation is `rlmeta evaluate` of the final checkpoint, on the same tasks.
    expected = evaluate_means(run_dir)
    for key, value in expected.items():
        assert rows[-1][f"eval/{key}"] == pytest.approx(value, rel=1e-9), key
    scores = {row["iteration"] + 1: row["eval/return/step_1"] for row in rows
              if "eval/return/step_1" in row}
    best = checkpoint.load_checkpoint(checkpoint.best_path(run_dir))
    assert best["iteration"] == max(scores, key=scores.get)
    assert best["best_score"] == max(scores.values())


def test_eval_steps_sets_how_many_inner_steps_the_held_out_evaluation_takes(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    rlmeta.train(MAML, run_dir, overrides={"iterations": 2, "eval_every": 2,
                                           "maml.eval_steps": 1})
    row = read_metrics(run_dir / METRICS_FILE)[-1]
    assert "eval/return/step_1" in row and "eval/return/step_2" not in row
    assert checkpoint.load_checkpoint(checkpoint.best_path(run_dir))["best_score"] == (
        row["eval/return/step_1"])
    # `rlmeta evaluate` takes the run's setting as its default too.
    logged = {key.removeprefix("eval/") for key in row if key.startswith("eval/")}
    assert set(evaluate_means(run_dir)) == logged - {"failed_tasks"}


class SplitEnv(TargetEnv):
    """An env with its own train and test tasks (as Meta-World's): each split's env rejects the
    other split's tasks."""

    task_splits = ("train", "test")

    def __init__(self, split: str = "train") -> None:
        super().__init__()
        self.split = split

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{**task, "split": self.split} for task in super().sample_tasks(n, rng)]

    def set_task(self, task: dict[str, Any]) -> None:
        if task["split"] != self.split:
            raise ValueError(f"a {task['split']} task on a {self.split} env")
        super().set_task(task)


def test_eval_every_evaluates_an_env_with_its_own_splits_on_the_test_split(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    rlmeta.train({**MAML, "env": f"{__name__}:SplitEnv"}, run_dir, overrides={"eval_every": 2})
    row = read_metrics(run_dir / METRICS_FILE)[-1]
    assert row["eval/failed_tasks"] == 0
    for key, value in evaluate_means(run_dir).items():
        assert row[f"eval/{key}"] == pytest.approx(value, rel=1e-9), key


@pytest.mark.ray
def test_eval_every_with_a_learner_group_evaluates_an_env_with_its_own_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test split's envs are built in the driver, with a runtime of its own, which holds
    the weights in one learner while training uses two."""
    # The Ray workers import SplitEnv from this file, as a user's module on PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    run_dir = tmp_path / "run"
    rlmeta.train({**MAML, "env": f"{__name__}:SplitEnv"}, run_dir,
                 overrides={"eval_every": 2, "workers": 1, "envs_per_worker": 2, "learners": 2})
    row = read_metrics(run_dir / METRICS_FILE)[-1]
    assert row["eval/failed_tasks"] == 0 and "eval/return/step_1" in row


@pytest.mark.ray
def test_eval_every_on_ray_workers_logs_what_the_local_runtime_does(tmp_path: Path) -> None:
    logged = []
    for workers in (0, 1):
        rlmeta.train(MAML, tmp_path / str(workers),
                     overrides={"workers": workers, "envs_per_worker": 2, "eval_every": 1})
        rows = read_metrics(tmp_path / str(workers) / METRICS_FILE)
        logged.append([{k: v for k, v in row.items() if k.startswith("eval/")} for row in rows])
    assert logged[0] == logged[1] and len(logged[0]) == 2 and logged[0][0]


def test_import_rlmeta_does_not_load_torch_until_the_api_is_used() -> None:
    code = ("import sys, rlmeta; print('torch' in sys.modules); rlmeta.load; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["False", "True"]
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        rlmeta.trian  # noqa: B018


def test_the_example_trains_loads_adapts_and_acts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "load_adapt_act.py"), str(tmp_path / "run"),
         "--iterations", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["inner_steps"] for line in lines] == [0, 1]
    assert all(np.isfinite(line["mean_return"]) for line in lines)
