"""Velocity tracking on velocity tasks: the task-blind bound, the regression, the rollouts of RL²
and MAML runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.velocity_tracking import (
    _stages,
    main,
    regression_slope,
    run_speeds,
    task_blind_bound,
    tracking,
)
from rlmeta.config_io import load_config
from rlmeta.run.train import train

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_task_blind_bound_is_the_least_error_of_any_one_speed() -> None:
    goals = np.array([0.0, 1.0, 2.0, 3.0, 0.2])
    bound = task_blind_bound(goals)
    assert bound == pytest.approx(np.abs(goals - 1.0).mean())  # the median
    speeds = np.linspace(-1.0, 4.0, 5001)
    errors = np.abs(speeds[:, None] - goals[None, :]).mean(axis=1)
    assert errors.min() == pytest.approx(bound, abs=1e-3)
    assert (errors >= bound - 1e-12).all()
    # Uniform targets on [0, 2]: E|G - 1| = 0.5.
    uniform = np.random.default_rng(0).uniform(0.0, 2.0, size=20000)
    assert task_blind_bound(uniform) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        task_blind_bound(np.array([]))


def test_regression_slope_matches_the_textbook_interval() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 2.0, size=30)
    y = 0.7 * x + 0.2 + rng.normal(0.0, 0.1, size=30)
    slope, half = regression_slope(x, y)
    fit, covariance = np.polyfit(x, y, 1, cov="unscaled")
    residuals = y - np.polyval(fit, x)
    stderr = np.sqrt(covariance[0, 0] * (residuals @ residuals) / 28)
    assert slope == pytest.approx(fit[0])
    assert half == pytest.approx(2.04841 * stderr, rel=1e-5)  # t(28) = 2.04841
    assert abs(slope - 0.7) < half
    with pytest.raises(ValueError, match="distinct x"):
        regression_slope(np.ones(5), np.arange(5.0))
    with pytest.raises(ValueError, match="length >= 3"):
        regression_slope(np.arange(2.0), np.arange(2.0))


def test_a_tracking_policy_and_a_one_speed_policy_are_told_apart() -> None:
    goals = np.random.default_rng(2).uniform(0.0, 2.0, size=40)
    steps = 60
    # Tracks from step 5 on; before that it runs at 1.0 whatever the target. One episode a stage.
    tracker = np.repeat(goals[:, None, None, None], steps, axis=3).repeat(2, axis=1)
    tracker[:, 0, :, :5] = 1.0
    one_speed = np.full((40, 2, 1, steps), 1.3)
    tracked = tracking("tracker", goals, tracker, 10)
    blind = tracking("blind", goals, one_speed, 10)
    assert tracked[0].error_rest == (0.0, 0.0)
    assert tracked[0].error_start[0] == pytest.approx(0.5 * np.abs(goals - 1.0).mean())
    assert tracked[0].slope[0] == pytest.approx(1.0)
    assert tracked[0].slope_start[0] == pytest.approx(0.5)  # half its first 10 steps at 1.0
    assert tracked[1].error_start == (0.0, 0.0)
    assert blind[0].slope[0] == pytest.approx(0.0, abs=1e-12)
    assert blind[0].error_episode[0] >= task_blind_bound(goals)
    assert blind[0].mean_speed[0] == pytest.approx(1.3)
    with pytest.raises(ValueError, match="settle_steps must be in"):
        tracking("tracker", goals, tracker, steps)
    with pytest.raises(ValueError, match="one row per goal"):
        tracking("tracker", goals[:5], tracker, 10)
    with pytest.raises(ValueError, match=r"\[tasks, stages, episodes, steps\]"):
        tracking("tracker", goals, tracker[:, :, 0], 10)


def test_a_stage_pools_its_episodes_per_task() -> None:
    goals = np.random.default_rng(3).uniform(0.0, 2.0, size=30)
    # Two episodes a stage, one 0.2 above the target and one 0.2 below: on average on target.
    episodes = goals[:, None, None, None] + np.array([0.2, -0.2])[None, None, :, None]
    speeds = np.broadcast_to(episodes, (30, 1, 2, 40))
    (row,) = tracking("pooled", goals, speeds, 10)
    assert row.stage == 0
    assert row.error_episode[0] == pytest.approx(0.2)
    assert row.slope[0] == pytest.approx(1.0)
    assert row.mean_speed[0] == pytest.approx(goals.mean())


def test_speeds_are_read_from_an_rl2_run_on_held_out_tasks(tmp_path: Path) -> None:
    config = load_config(
        EXPERIMENTS / "rl2_halfcheetah_vel.yaml",
        ["workers=0", "iterations=1", "rl2.meta_batch_size=2", "env_kwargs.horizon=20",
         "eval_tasks=2"],
    )
    train(config, tmp_path / "run")
    measured = run_speeds(tmp_path / "run", 3)
    goals, speeds = measured.goals, measured.runs
    assert (measured.stage, measured.algorithm, measured.iteration) == ("episode", "rl2", 1)
    assert measured.env_steps == 2 * 2 * 20  # 2 tasks x 2 episodes x 20 steps
    assert goals.shape == (3,) and ((goals >= 0.0) & (goals <= 2.0)).all()
    assert set(speeds) == {"meta-learned", "random init"}
    for runs in speeds.values():
        assert runs.shape == (3, 2, 1, 20)  # tasks x episodes per trial x 1 x horizon
        assert np.isfinite(runs).all()
        assert not np.allclose(runs[0], runs[1])  # each task its own trial
    again = run_speeds(tmp_path / "run", 3)
    np.testing.assert_array_equal(again.goals, goals)
    np.testing.assert_array_equal(again.runs["meta-learned"], speeds["meta-learned"])
    main([str(tmp_path / "run"), "--tasks", "3", "--settle-steps", "5",
          "--out", str(tmp_path / "tracking.json")])
    written = json.loads((tmp_path / "tracking.json").read_text())
    assert (written["algorithm"], written["iteration"], written["stage"]) == ("rl2", 1, "episode")
    assert written["goals"] == goals.tolist()
    assert [(r["policy"], r["stage"]) for r in written["rows"]] == [
        ("meta-learned", 0), ("meta-learned", 1), ("random init", 0), ("random init", 1)]


def test_speeds_of_a_maml_run_are_read_per_inner_step(tmp_path: Path) -> None:
    config = load_config(
        EXPERIMENTS / "maml_halfcheetah_vel.yaml",
        ["workers=0", "iterations=1", "maml.meta_batch_size=2", "maml.episodes_per_task=3",
         "env_kwargs.horizon=20", "envs_per_worker=2", "eval_tasks=2"],
    )
    train(config, tmp_path / "maml")
    measured = run_speeds(tmp_path / "maml", 3)
    goals, speeds = measured.goals, measured.runs
    assert (measured.stage, measured.algorithm) == ("inner steps", "maml")
    rl2 = load_config(
        EXPERIMENTS / "rl2_halfcheetah_vel.yaml",
        ["workers=0", "iterations=1", "rl2.meta_batch_size=2", "env_kwargs.horizon=20"],
    )
    train(rl2, tmp_path / "rl2")
    np.testing.assert_array_equal(run_speeds(tmp_path / "rl2", 3).goals, goals)  # same seed
    for runs in speeds.values():
        assert runs.shape == (3, 4, 3, 20)  # tasks x 0..3 inner steps x episodes x horizon
        assert np.isfinite(runs).all()
        # Each inner step changes the policy, so each stage runs at other speeds.
        assert not np.allclose(runs[:, 0], runs[:, 1])
    again = run_speeds(tmp_path / "maml", 3).runs
    np.testing.assert_array_equal(again["meta-learned"], speeds["meta-learned"])
    with pytest.raises(ValueError, match="--actions applies to RL² runs"):
        run_speeds(tmp_path / "maml", 3, actions="mode")


def test_episodes_are_grouped_into_stages_and_padded_where_they_ended_early() -> None:
    episodes = [[float(i)] * 5 for i in range(6)]
    episodes[3] = [3.0, 3.0]  # ended after 2 steps
    grouped = _stages(episodes, 3, 2, 5)
    assert grouped.shape == (3, 2, 5)
    assert grouped[1, 0, 0] == 2.0  # in the order they began
    np.testing.assert_array_equal(grouped[1, 1], [3.0, 3.0, np.nan, np.nan, np.nan])
    with pytest.raises(ValueError, match="expected 2 stages x 2 episodes, the env began 6"):
        _stages(episodes, 2, 2, 5)
    with pytest.raises(ValueError, match="an episode ran 5 steps; expected 1 to 4"):
        _stages(episodes, 3, 2, 4)


def test_episodes_that_end_early_count_only_the_steps_they_ran() -> None:
    goals = np.random.default_rng(4).uniform(0.0, 2.0, size=10)
    # Tracks the target exactly while it runs, 1.0 off it in the steps before 20.
    speeds = np.repeat(goals[:, None, None, None], 40, axis=3).repeat(2, axis=2)
    speeds[:, :, :, :20] += 1.0
    speeds[:, 0, 0, 30:] = np.nan  # every task's first episode ends after 30 steps
    speeds[:3, 0, :, 15:] = np.nan  # three tasks end both episodes within the start
    (row,) = tracking("early", goals, speeds, 20)
    assert row.tasks_rest == 7
    assert row.error_rest == (0.0, 0.0)
    assert row.slope[0] == pytest.approx(1.0)
    assert row.error_start == pytest.approx((1.0, 0.0), abs=1e-12)
    # Per task, the mean over the steps run: 40 of 70 steps 1.0 off (all 30 for the three).
    per_task = np.array([1.0] * 3 + [40 / 70] * 7)
    assert row.error_episode[0] == pytest.approx(per_task.mean())
    assert row.episode_length[0] == pytest.approx((3 * 15 + 7 * 35) / 10)
    few = speeds.copy()
    few[3:, 0, :, 15:] = np.nan  # no task runs past the start: nothing to say about the rest
    (none,) = tracking("early", goals, few, 20)
    assert none.tasks_rest == 0 and np.isnan(none.slope[0]) and np.isnan(none.error_rest[0])
    empty = speeds.copy()
    empty[0, 0, 0, :] = np.nan
    with pytest.raises(ValueError, match="at least one step"):
        tracking("early", goals, empty, 20)


def test_runs_that_are_not_on_a_velocity_task_are_refused(tmp_path: Path) -> None:
    bandit = load_config(
        EXPERIMENTS / "rl2_bandit_k5_n10.yaml",
        ["workers=0", "iterations=1", "rl2.meta_batch_size=2", "eval_tasks=2"],
    )
    train(bandit, tmp_path / "bandit")
    with pytest.raises(ValueError, match="expected a velocity task env"):
        run_speeds(tmp_path / "bandit", 2)
    maml = load_config(
        EXPERIMENTS / "maml_navigation2d.yaml",
        ["workers=0", "iterations=1", "maml.meta_batch_size=2", "maml.episodes_per_task=2",
         "eval_tasks=2"],
    )
    train(maml, tmp_path / "maml")
    with pytest.raises(ValueError, match="expected a velocity task env"):
        run_speeds(tmp_path / "maml", 2)
