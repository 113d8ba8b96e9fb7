"""Fast-adaptation evaluation of a checkpoint on held-out tasks, next to a random-init baseline.

Held-out tasks come from a task RNG stream separate from training's (`default_rng([seed, 1])`
versus training's `default_rng(seed)`); `split="train"` replays the tasks training drew first.
For Meta-World the split also selects the benchmark's own train or test tasks. The policies,
the checkpoint's and a freshly built algorithm's (the run's untrained initial weights), and for a
warm-started run (`init_from`) the weights it started from, are evaluated on the same tasks with
the same seeds, through `runtime.evaluate` on the workers. Outputs: `adaptation.csv`,
`adaptation.png` and a printed table; with `video=K`, videos of the meta-learned policy
adapting on the first K tasks (`rlmeta.run.video`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from rlmeta import checkpoint, tasks, warm_start
from rlmeta import run_dir as run_dirs
from rlmeta.algorithm import TaskSpec
from rlmeta.config import MAX_TASKS, ExperimentConfig, with_changes
from rlmeta.config_io import config_from_dict
from rlmeta.run import build
from rlmeta.run.train import draw_task_specs, meta_batch_size

SPLITS = ("train", "test")
HELD_OUT_STREAM = 1
STARTING_POLICY = "starting policy"  # a warm-started run's initial weights, before fine-tuning
POLICIES = ("meta-learned", STARTING_POLICY, "random init")  # column and legend order
_COLORS = {"meta-learned": "tab:blue", STARTING_POLICY: "tab:orange", "random init": "tab:gray"}
CSV_FILE = "adaptation.csv"
PLOT_FILE = "adaptation.png"
_KEY = re.compile(r"(?P<metric>return|success)/(?P<axis>step|episode)_(?P<index>\d+)")

def t_critical_95(dof: int) -> float:
    """Two-sided 95% Student-t quantile for `dof` degrees of freedom (12.706 for 1, 1.96 in the
    limit)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    return float(stats.t.ppf(0.975, dof))


def mean_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval over tasks (NaN half-width for one task)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if array.size == 1:
        return float(array[0]), math.nan
    sem = array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean()), float(t_critical_95(array.size - 1) * sem)


def format_mean_ci(mean: float, half_width: float) -> str:
    """`mean ± half-width`, or the mean alone where one value leaves no interval."""
    if math.isnan(half_width):
        return f"{mean:.3f} (one value, no interval)"
    return f"{mean:.3f} ± {half_width:.3f}"


@dataclass
class Summary:
    """One metric of one policy over the evaluation tasks."""

    policy: str
    key: str  # e.g. return/step_2, return/episode_0, return/trial, success/step_1
    mean: float
    ci95: float  # half-width
    tasks: int

    @property
    def x(self) -> int | None:
        """Inner step or episode index, None for a scalar such as return/trial."""
        match = _KEY.fullmatch(self.key)
        return int(match["index"]) if match else None

    @property
    def metric(self) -> str:
        return self.key.split("/", 1)[0]


def summarize(policy: str, rows: list[dict[str, float]]) -> list[Summary]:
    """Mean and CI per metric key over the per-task rows, in a stable, readable order."""
    keys = sorted({key for row in rows for key in row}, key=_key_order)
    out = []
    for key in keys:
        values = [row[key] for row in rows if key in row]
        mean, half = mean_ci95(values)
        out.append(Summary(policy, key, mean, half, len(values)))
    return out


def _key_order(key: str) -> tuple:
    match = _KEY.fullmatch(key)
    if match:
        return (match["metric"] != "return", match["axis"], int(match["index"]), key)
    return (key.split("/", 1)[0] != "return", "~", 0, key)


def evaluation_config(
    config: ExperimentConfig,
    split: str,
    workers: int | None = None,
    address: str | None = None,
    actions: str | None = None,
) -> ExperimentConfig:
    """The run's config set up for evaluation: the env's split (for an env with task splits),
    optionally other workers and how actions are chosen (an algorithm that can choose, RL²), and
    `address` in place of the one the run was trained with (None: a local instance)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if actions is not None:
        config = build.algorithm_of(config).with_eval_actions(config, actions)
    changes: dict[str, Any] = {}
    if "split" in config.env_kwargs or tasks.has_task_splits(config.env):
        changes["env_kwargs"] = {**config.env_kwargs, "split": split}
    if workers is not None:
        changes["workers"] = workers
    # Evaluation never updates the weights: one learner holds them, however many trained them
    # (a learner group needs Ray workers, which an evaluation in one process does not start).
    changes["learners"] = 1
    # The address a checkpoint stores is another session's cluster: never contacted unless the
    # user passes it again (None starts a local instance).
    changes["address"] = address
    # Validated like any config, so a bad override is reported like any config error.
    return with_changes(config, **changes)


def evaluation_specs(
    config: ExperimentConfig, env: Any, n_tasks: int, split: str
) -> list[TaskSpec]:
    """`n_tasks` tasks and seeds: a held-out stream for test, training's own stream for train."""
    if not 1 <= n_tasks <= MAX_TASKS:
        raise ValueError(f"number of evaluation tasks must be from 1 to {MAX_TASKS}, got {n_tasks}")
    if split == "test":
        return draw_task_specs(env, n_tasks, np.random.default_rng([config.seed, HELD_OUT_STREAM]))
    # Replay the driver: whole meta-batches from the training stream, as training drew them.
    rng, specs, batch = np.random.default_rng(config.seed), [], meta_batch_size(config)
    while len(specs) < n_tasks:
        specs.extend(draw_task_specs(env, batch, rng))
    return [dataclasses.replace(spec, index=i) for i, spec in enumerate(specs[:n_tasks])]


def default_adapt_steps(config: ExperimentConfig) -> int:
    """The algorithm's answer, e.g. MAML: the paper's 0..3 inner steps; RL²: unused (0)."""
    return build.algorithm_of(config).default_adapt_steps(config)


class HeldOutEvaluation:
    """The evaluation `rlmeta evaluate` runs, of a training run's current weights, during
    training (`eval_every`): the same held-out tasks and seeds every time, through
    `runtime.evaluate` on the training runtime's workers. An env with its own task splits
    (Meta-World) evaluates the test split's tasks on envs of that split, in the driver process,
    since the training workers' envs hold only the train split."""

    def __init__(self, config: ExperimentConfig, runtime: Any) -> None:
        held_out = evaluation_config(config, "test")
        env = build.build_env(held_out)
        try:
            self.specs = evaluation_specs(held_out, env, config.eval_tasks, "test")
            spaces = (env.observation_space, env.action_space)
        finally:
            env.close()
        self.adapt_steps = default_adapt_steps(config)
        self.training_runtime, self.own_runtime = runtime, None
        if held_out.env_kwargs != config.env_kwargs:
            self.own_runtime = build.make_runtime(with_changes(held_out, workers=0), *spaces)

    def run(self) -> dict[str, float]:
        """Means over the held-out tasks, e.g. MAML `return/step_k`, RL² `return/trial`."""
        if self.own_runtime is None:
            outcomes = self.training_runtime.evaluate(self.specs, self.adapt_steps)
        else:
            outcomes = self.own_runtime.evaluate(
                self.specs, self.adapt_steps, weights=self.training_runtime.get_weights())
        rows, failed = _split_failures(outcomes)
        means = {s.key: s.mean for s in summarize("meta-learned", rows)}
        return {**means, "failed_tasks": float(failed)}

    def close(self) -> None:
        if self.own_runtime is not None:
            self.own_runtime.shutdown()


@dataclass
class EvaluationReport:
    checkpoint: Path
    out_dir: Path
    split: str
    adapt_steps: int
    summaries: list[Summary]
    failed_tasks: dict[str, int]  # per policy, tasks lost to env errors
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. why a row is absent
    videos: list[Path] = dataclasses.field(default_factory=list)
    protocol: Any = None  # rlmeta.run.protocol.ProtocolReport: the benchmark's own figures


def evaluate(
    target: str | Path,
    n_tasks: int | None = None,
    split: str = "test",
    adapt_steps: int | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    address: str | None = None,
    actions: str | None = None,
    video: int = 0,
    protocol: bool | Mapping[str, Any] = True,
) -> EvaluationReport:
    """Evaluate a run's newest checkpoint (or a checkpoint file); write CSV and plot to `out_dir`.

    Default `out_dir`: `<run_dir>/eval-<split>` next to the checkpoints folder. `actions`
    (RL² only) overrides the run's `rl2.eval_actions`: sample, or mode. `video` K > 0 also
    writes `<out_dir>/videos/`: the meta-learned policy adapting on the first K tasks.
    `protocol`: for an env that declares its benchmark's own evaluation protocol (Meta-World),
    also run it and write `protocol.json` / `protocol.csv` (`rlmeta.run.protocol`); a mapping
    holds its settings (e.g. `{"num_evals": 3}`; `num_evals` 0 or False skips it).
    """
    if video < 0:
        raise ValueError(f"video must be a number of tasks >= 0, got {video}")
    path = checkpoint.resolve_checkpoint(target)
    state = checkpoint.load_checkpoint(path)
    run_dirs.check_in_its_run(state, path)
    config = evaluation_config(
        config_from_dict(state["config"]), split, workers, address, actions
    )
    n_tasks = config.eval_tasks if n_tasks is None else n_tasks
    adapt_steps = default_adapt_steps(config) if adapt_steps is None else adapt_steps
    if adapt_steps < 0:
        raise ValueError(f"adapt steps must be >= 0, got {adapt_steps}")
    out = Path(out_dir) if out_dir is not None else _run_dir_of(path) / f"eval-{split}"
    if video:
        from rlmeta.run.video import check_video_support

        check_video_support(config)
    env = build.build_env(config)
    try:
        specs = evaluation_specs(config, env, n_tasks, split)
        spaces = (env.observation_space, env.action_space)
    finally:
        env.close()
    starting, notes = starting_weights(state.get(warm_start.RECORD_KEY), config.algorithm)
    rows = _evaluate_policies(config, state["runtime"], specs, adapt_steps, spaces, starting)
    summaries = [s for policy in POLICIES if policy in rows
                 for s in summarize(policy, rows[policy][0])]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / CSV_FILE, summaries)
    title = (
        f"{config.env} ({config.algorithm}), {n_tasks} {split} tasks, "
        f"checkpoint {_run_dir_of(path).name}/{path.name}"
    )
    plot_adaptation(out / PLOT_FILE, summaries, title, build.algorithm_of(config).evaluation_axis)
    failed = {policy: outcome[1] for policy, outcome in rows.items()}
    videos = _videos(config, state, specs[:video], adapt_steps, spaces, out) if video else []
    report = EvaluationReport(path, out, split, adapt_steps, summaries, failed, notes, videos)
    report.protocol = _protocol(config, state, spaces, out, protocol, notes)
    return report


def _protocol(
    config: ExperimentConfig,
    state: dict[str, Any],
    spaces: tuple[Any, Any],
    out: Path,
    protocol: bool | Mapping[str, Any],
    notes: list[str],
) -> Any:
    """The env's own protocol's report, or None (skipped, or an env that declares none)."""
    from rlmeta.run.protocol import has_protocol, run_protocol

    settings = {} if isinstance(protocol, bool) else dict(protocol)
    if protocol is False or settings.get("num_evals") == 0:
        return None
    if not has_protocol(config):
        if settings:
            notes.append(f"no benchmark protocol run: env {config.env!r} declares none")
        return None
    return run_protocol(config, state["runtime"]["algorithm"], spaces, out, settings)


def _videos(
    config: ExperimentConfig,
    state: dict[str, Any],
    specs: list[TaskSpec],
    adapt_steps: int,
    spaces: tuple[Any, Any],
    out: Path,
) -> list[Path]:
    """The checkpoint's policy, in this process, recorded on `specs` (see `rlmeta.run.video`)."""
    from rlmeta.run.video import VIDEO_DIR, record_videos

    algorithm = build.build_algorithm(config, "cpu", *spaces)
    algorithm.load_state_dict(state["runtime"]["algorithm"])
    axis = build.algorithm_of(config).evaluation_axis
    return record_videos(config, algorithm, specs, adapt_steps, axis, out / VIDEO_DIR)


def starting_weights(
    record: dict[str, Any] | None, algorithm: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """The weights a warm-started run began from, read again from the checkpoint its start
    `record` names, or None with a note saying why not. A file that has changed since (its
    weights' digest differs from the record's) is not evaluated: its row would be another
    policy's."""
    if not record:
        return None, []
    source = record["checkpoint"]
    try:
        initial = warm_start.read_initial_weights(source, algorithm)
    except (checkpoint.CheckpointError, ValueError) as error:
        return None, [f"{STARTING_POLICY} not evaluated: {error}"]
    if initial.record["weights_sha256"] != record.get("weights_sha256"):
        return None, [f"{STARTING_POLICY} not evaluated: {source!r} holds other weights than "
                      f"this run started from (weights digest differs from the checkpoint's "
                      f"init_from record)"]
    return initial.weights, []


def _run_dir_of(path: Path) -> Path:
    return path.parent.parent if path.parent.name == checkpoint.CHECKPOINT_DIR else path.parent


def _evaluate_policies(
    config: ExperimentConfig,
    runtime_state: dict[str, Any],
    specs: list[TaskSpec],
    adapt_steps: int,
    spaces: tuple[Any, Any],
    starting: dict[str, Any] | None,
) -> dict[str, tuple[list[dict[str, float]], int]]:
    runtime = build.make_runtime(config, *spaces)
    try:
        runtime.load_state_dict(runtime_state)
        # The baseline: the run's own untrained initial weights, adapted the same way.
        initial = build.build_algorithm(config, "cpu", *spaces).get_weights()
        rows = {"meta-learned": _split_failures(runtime.evaluate(specs, adapt_steps))}
        if starting is not None:
            rows[STARTING_POLICY] = _split_failures(
                runtime.evaluate(specs, adapt_steps, weights=starting)
            )
        rows["random init"] = _split_failures(runtime.evaluate(specs, adapt_steps, weights=initial))
        return rows
    finally:
        runtime.shutdown()


def _split_failures(outcomes: list[Any]) -> tuple[list[dict[str, float]], int]:
    """Per-task metric dicts; anything else is a task the runtime reports as failed."""
    rows = [row for row in outcomes if isinstance(row, dict)]
    if not rows:
        messages = {getattr(o, "message", repr(o)) for o in outcomes}
        raise RuntimeError(f"every evaluation task failed: {'; '.join(sorted(messages))[:500]}")
    return rows, len(outcomes) - len(rows)


def write_csv(path: str | Path, summaries: list[Summary]) -> None:
    """One row per (policy, metric): policy, key, x, mean, ci95 bounds, task count."""
    with Path(path).open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["policy", "key", "x", "mean", "ci95_low", "ci95_high", "tasks"])
        for s in summaries:
            low, high = s.mean - s.ci95, s.mean + s.ci95
            x = "" if s.x is None else s.x
            writer.writerow([s.policy, s.key, x, f"{s.mean:.6g}", f"{low:.6g}", f"{high:.6g}",
                             s.tasks])


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as file:
        return list(csv.DictReader(file))


def plot_adaptation(path: str | Path, summaries: list[Summary], title: str, xlabel: str) -> None:
    """Return (and success rate, when reported) against `xlabel` (the algorithm's evaluation
    axis: inner step or episode), with CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("return", "success") if any(s.metric == m and s.x is not None
                                                        for s in summaries)]
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for policy in POLICIES:
            points = sorted(
                (s.x, s.mean, s.ci95)
                for s in summaries
                if s.policy == policy and s.metric == metric and s.x is not None
            )
            if not points:
                continue
            xs, means, halves = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            halves = np.nan_to_num(halves)
            axis.plot(xs, means, marker="o", color=_COLORS[policy], label=policy)
            axis.fill_between(xs, means - halves, means + halves, color=_COLORS[policy], alpha=0.2)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("mean return per episode" if metric == "return" else "success rate")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend(title="95% CI over tasks")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_table(summaries: list[Summary]) -> str:
    """A plain-text table: one row per metric, one column per policy (mean ± CI half-width)."""
    keys = sorted({s.key for s in summaries}, key=_key_order)
    by = {(s.policy, s.key): s for s in summaries}
    policies = [policy for policy in POLICIES if any(s.policy == policy for s in summaries)]
    header = ["metric", *policies]
    lines = [header]
    for key in keys:
        cells = [key]
        for policy in policies:
            s = by.get((policy, key))
            cells.append("-" if s is None else format_mean_ci(s.mean, s.ci95))
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)
