"""Does a meta-learned policy adapt to a velocity task? Read from the speeds it runs at.

On HalfCheetahVel the reward, −|v − g| − 0.05‖a‖², shows the velocity error from the first step,
so an RL² policy that adapts can do it inside episode 0 and leave nothing for episode 1 to gain:
return per episode cannot tell adaptation from a policy that runs at one speed for every task. The
speeds can. A task-blind policy (one that ignores what the trial shows) runs at speeds V whose
distribution does not depend on the target g, so on tasks g_1..g_N its expected mean error is

    E[(1/N) Σ_i |V_i − g_i|] = E_V[(1/N) Σ_i |V − g_i|] ≥ min_c (1/N) Σ_i |c − g_i|,

attained by running at the targets' median c: the task-blind bound, computed on the same tasks
(0.5 for g ~ U[0, 2] in expectation). A measured error below it, by more than its confidence
interval, can only come from reading the task off the trial. The slope of the speed a policy
settles at against the target says the same thing as a number between 0 (task-blind) and 1
(tracking).

A row is one stage of adaptation: for RL² an episode of one trial per task; for MAML the policy
after k inner gradient steps (0..3, `rlmeta evaluate`'s fine-tuning), each stage's 20 episodes
per task pooled, so MAML's adapted policy is held to the same bound on the same tasks. Episodes
that end early (AntVel's falls) count the steps they ran, and their lengths are reported.

    python -m benchmarks.velocity_tracking runs/rl2_cheetah --tasks 100

writes the table to stdout and, with `--out`, its rows as JSON. Held-out tasks and seeds are
`rlmeta evaluate`'s (a run's seed fixes them, so RL² and MAML runs of one seed see the same
targets); an RL² policy acts as the run's `rl2.eval_actions` says unless `--actions`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta import checkpoint
from rlmeta.config_io import config_from_dict
from rlmeta.distributed.worker import evaluate_task
from rlmeta.run import build
from rlmeta.run.evaluation import (
    default_adapt_steps,
    evaluation_config,
    evaluation_specs,
    mean_ci95,
    t_critical_95,
)

# Steps of an episode over which errors are averaged: the start, where the policy can only be
# finding out the target, and the rest, where a policy that has found it can hold it.
DEFAULT_SETTLE_STEPS = 50


@dataclass
class Tracking:
    """Velocity tracking of one policy on N tasks (± are 95% intervals over tasks)."""

    policy: str
    stage: int  # RL²: episode of the trial; MAML: inner gradient steps taken
    error_start: tuple[float, float]  # mean |v − g| over the episode's first settle_steps
    error_rest: tuple[float, float]  # mean |v − g| over the remaining steps
    error_episode: tuple[float, float]  # mean |v − g| over the whole episode
    mean_speed: tuple[float, float]  # mean v over the remaining steps
    slope_start: tuple[float, float]  # least-squares slope of the start's mean v on g
    slope: tuple[float, float]  # least-squares slope of the rest's mean v on g
    episode_length: tuple[float, float]  # mean steps per episode (short where episodes end early)
    tasks_rest: int  # tasks with a step past settle_steps: the "rest" statistics are over these


def task_blind_bound(goals: np.ndarray) -> float:
    """The least mean error |c − g_i| any one speed c achieves on these targets (c = median):
    no policy that ignores the task can expect a lower mean error on them."""
    goals = np.asarray(goals, dtype=np.float64)
    if goals.ndim != 1 or goals.size < 1:
        raise ValueError(f"goals must be a non-empty 1-D array, got shape {goals.shape}")
    return float(np.abs(goals - np.median(goals)).mean())


def regression_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its 95% half-width (t with N − 2 dof)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"slope needs two 1-D arrays of one length >= 3, got {x.shape}, {y.shape}")
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ValueError("slope needs at least two distinct x values, got all equal")
    slope = float(dx @ (y - y.mean())) / sxx
    residuals = y - y.mean() - slope * dx
    stderr = np.sqrt(float(residuals @ residuals) / (x.size - 2) / sxx)
    return slope, float(t_critical_95(x.size - 2) * stderr)


def _task_means(values: np.ndarray) -> np.ndarray:
    """Per task, the mean over the steps of its episodes [tasks, episodes, steps], skipping the NaN
    that pads an episode that ended early; NaN for a task with no steps there."""
    counts = np.isfinite(values).sum(axis=(1, 2))
    return np.where(counts > 0, np.nansum(values, axis=(1, 2)) / np.maximum(counts, 1), np.nan)


def _over_tasks(goals: np.ndarray, per_task: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Mean ± interval of `per_task` and its slope on the goals, over the tasks it is defined for
    (NaN where fewer than 3 are)."""
    kept = np.isfinite(per_task)
    if kept.sum() < 3:
        return (np.nan, np.nan), (np.nan, np.nan)
    return mean_ci95(per_task[kept]), regression_slope(goals[kept], per_task[kept])


def tracking(
    policy: str, goals: np.ndarray, speeds: np.ndarray, settle_steps: int = DEFAULT_SETTLE_STEPS
) -> list[Tracking]:
    """One row per stage from `speeds` [tasks, stages, episodes, steps] run on targets `goals`
    [tasks]; a task's episodes of one stage are pooled (its mean over their steps is one sample).
    NaN pads episodes that ended early: a task whose episodes all ended within settle_steps has
    no "rest" and is left out of those statistics (the rest are over `tasks_rest` tasks). The
    task-blind bound still holds: the speeds and when episodes end are the same for every target
    when the policy ignores it."""
    goals, speeds = np.asarray(goals, dtype=np.float64), np.asarray(speeds, dtype=np.float64)
    if speeds.ndim != 4 or speeds.shape[0] != goals.shape[0]:
        raise ValueError(
            f"speeds must be [tasks, stages, episodes, steps] with one row per goal; got "
            f"{speeds.shape} for {goals.shape[0]} goals"
        )
    if not 0 < settle_steps < speeds.shape[3]:
        raise ValueError(
            f"settle_steps must be in (0, {speeds.shape[3]}) for {speeds.shape[3]}-step "
            f"episodes, got {settle_steps}"
        )
    errors = np.abs(speeds - goals[:, None, None, None])
    rows = []
    for stage in range(speeds.shape[1]):
        start, rest = np.s_[:, stage, :, :settle_steps], np.s_[:, stage, :, settle_steps:]
        if not np.isfinite(speeds[start][:, :, 0]).all():
            raise ValueError("every episode needs at least one step (NaN pads only after it)")
        rest_speed = _task_means(speeds[rest])
        error_rest, _ = _over_tasks(goals, _task_means(errors[rest]))
        mean_speed, slope = _over_tasks(goals, rest_speed)
        rows.append(Tracking(
            policy=policy,
            stage=stage,
            error_start=mean_ci95(_task_means(errors[start])),
            error_rest=error_rest,
            error_episode=mean_ci95(_task_means(errors[:, stage])),
            mean_speed=mean_speed,
            slope_start=regression_slope(goals, _task_means(speeds[start])),
            slope=slope,
            episode_length=mean_ci95(np.isfinite(speeds[:, stage]).sum(axis=2).mean(axis=1)),
            tasks_rest=int(np.isfinite(rest_speed).sum()),
        ))
    return rows


class _SpeedLog(gym.Wrapper):
    """Keeps `info["x_velocity"]` of every step, one list per episode, in `episodes`: a list
    that several envs may share, which then holds their episodes in the order they began."""

    def __init__(self, env: gym.Env, episodes: list[list[float]]) -> None:
        super().__init__(env)
        self.episodes = episodes
        self._current: list[float] = []

    def reset(self, **kwargs: Any) -> Any:
        self._current = []
        self.episodes.append(self._current)
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        info = result[4]
        if "x_velocity" not in info:
            raise ValueError(
                f"env {self.env.spec.id if self.env.spec else type(self.env).__name__} reports "
                f"no info['x_velocity']; expected a velocity task env (e.g. HalfCheetahVel)"
            )
        self._current.append(float(info["x_velocity"]))
        return result


def _stages(
    episodes: list[list[float]], stages: int, per_stage: int, steps: int
) -> np.ndarray:
    """[stages, per_stage, steps] from the episodes of one task, in the order they began (a stage
    starts only once the one before has ended, so the order groups them); NaN after the end of
    an episode shorter than `steps`."""
    if len(episodes) != stages * per_stage:
        raise ValueError(f"expected {stages} stages x {per_stage} episodes, the env began "
                         f"{len(episodes)}")
    padded = np.full((len(episodes), steps), np.nan)
    for row, episode in zip(padded, episodes, strict=True):
        if not 1 <= len(episode) <= steps:
            raise ValueError(f"an episode ran {len(episode)} steps; expected 1 to {steps}")
        row[:len(episode)] = episode
    return padded.reshape(stages, per_stage, steps)


@dataclass
class Speeds:
    """What a checkpoint's policies ran at on held-out velocity tasks."""

    goals: np.ndarray  # [tasks] target velocities
    runs: dict[str, np.ndarray]  # policy -> speeds [tasks, stages, episodes, steps]
    stage: str  # what a stage is: "episode" (of an RL² trial) or "inner steps" (MAML)
    algorithm: str
    iteration: int  # training iterations (updates) behind the checkpoint
    env_steps: int  # env steps of training behind the checkpoint


def run_speeds(target: str | Path, n_tasks: int, actions: str | None = None) -> Speeds:
    """The speeds of the trained policy and of its run's random initial weights on `n_tasks`
    held-out tasks: RL², one trial (stages are its episodes); MAML, `rlmeta evaluate`'s
    fine-tuning (stages are 0..3 inner steps, each `episodes_per_task` episodes, on the run's
    `envs_per_worker` envs)."""
    state = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(target))
    config = config_from_dict(state["config"])
    if actions is not None and config.algorithm != "rl2":
        raise ValueError(f"--actions applies to RL² runs; {str(target)!r} was trained with "
                         f"{config.algorithm!r}, whose evaluation samples")
    config = evaluation_config(config, "test", actions=actions)
    if config.algorithm not in ("rl2", "maml"):
        raise ValueError(f"velocity tracking reads RL² and MAML runs; {str(target)!r} was "
                         f"trained with {config.algorithm!r}")
    episodes: list[list[float]] = []
    n_envs = 1 if config.algorithm == "rl2" else config.envs_per_worker
    envs = [_SpeedLog(build.build_env(config), episodes) for _ in range(n_envs)]
    try:
        specs = evaluation_specs(config, envs[0], n_tasks, "test")
        if not all(isinstance(spec.task, dict) and "velocity" in spec.task for spec in specs):
            raise ValueError(
                f"{config.env} tasks look like {specs[0].task!r}; expected a velocity task env "
                f"(tasks {{'velocity': v}}, e.g. rlmeta/HalfCheetahVel-v0)"
            )
        goals = np.array([float(spec.task["velocity"]) for spec in specs])
        algorithm = build.build_algorithm(
            config, "cpu", envs[0].observation_space, envs[0].action_space
        )
        if config.algorithm == "rl2":
            shape = (config.rl2.episodes_per_trial, 1)
        else:
            adapt_steps = default_adapt_steps(config)
            shape = (adapt_steps + 1, config.maml.episodes_per_task)
        # Built from the run's seed, the algorithm holds the run's random initial weights.
        policies = [("meta-learned", state["runtime"]["algorithm"]["weights"]),
                    ("random init", algorithm.get_weights())]
        speeds = {}
        for name, weights in policies:
            algorithm.set_weights(weights)
            per_task = []
            for spec in specs:
                episodes.clear()
                if config.algorithm == "rl2":
                    algorithm.sample_trials(envs, spec, 0, num_trials=1,
                                            actions=config.rl2.eval_actions)
                else:
                    outcome = evaluate_task(algorithm, envs, spec, adapt_steps)
                    if not isinstance(outcome, dict):
                        raise RuntimeError(f"evaluation of task {spec.task!r} failed: "
                                           f"{outcome.message}")
                per_task.append(list(episodes))
            # Padded to the longest episode any task ran (the horizon, unless all ended early).
            steps = max(len(episode) for task in per_task for episode in task)
            speeds[name] = np.array([_stages(task, *shape, steps) for task in per_task])
        return Speeds(
            goals=goals, runs=speeds,
            stage="episode" if config.algorithm == "rl2" else "inner steps",
            algorithm=config.algorithm, iteration=int(state["iteration"]),
            env_steps=int(state["env_steps"]),
        )
    finally:
        for env in envs:
            env.close()


def _cell(value: tuple[float, float]) -> str:
    return f"{value[0]:.3f} ± {value[1]:.3f}"


def format_table(rows: list[Tracking], bound: float, settle_steps: int, stage: str) -> str:
    lines = [
        f"| policy | {stage} | mean error, steps < {settle_steps} | mean error, steps ≥ "
        f"{settle_steps} | mean error, episode | mean speed, steps ≥ {settle_steps} | slope of "
        f"speed on target, steps < {settle_steps} | slope, steps ≥ {settle_steps} | steps per "
        f"episode (tasks with a step ≥ {settle_steps}) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.policy} | {row.stage} | {_cell(row.error_start)} | {_cell(row.error_rest)}"
            f" | {_cell(row.error_episode)} | {_cell(row.mean_speed)} | {_cell(row.slope_start)}"
            f" | {_cell(row.slope)} | {row.episode_length[0]:.1f} ({row.tasks_rest}) |"
        )
    lines.append(f"\nTask-blind bound on these tasks (no policy that ignores the task can expect "
                 f"a lower mean error): {bound:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="an RL² or MAML run directory or checkpoint file on a "
                                           "velocity task")
    parser.add_argument("--tasks", type=int, default=100, help="held-out tasks (default 100)")
    parser.add_argument("--actions", choices=("sample", "mode"), default=None,
                        help="how the policy acts (default: the run's rl2.eval_actions)")
    parser.add_argument("--settle-steps", type=int, default=DEFAULT_SETTLE_STEPS,
                        help=f"an episode's first steps, reported apart (default "
                             f"{DEFAULT_SETTLE_STEPS})")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    measured = run_speeds(args.target, args.tasks, args.actions)
    goals = measured.goals
    rows = [row for name, runs in measured.runs.items()
            for row in tracking(name, goals, runs, args.settle_steps)]
    bound = task_blind_bound(goals)
    print(f"{args.target}: {measured.algorithm}, {measured.iteration} iterations, "
          f"{measured.env_steps:,} env steps")
    print(format_table(rows, bound, args.settle_steps, measured.stage))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "target": str(args.target), "algorithm": measured.algorithm,
            "iteration": measured.iteration, "env_steps": measured.env_steps,
            "stage": measured.stage, "tasks": args.tasks,
            "settle_steps": args.settle_steps, "task_blind_bound": bound, "goals": goals.tolist(),
            "rows": [asdict(row) for row in rows],
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
