"""The RL² paper's tables (Duan et al. 2016, Tables 1 and 2): RL² rows measured beside baselines.

Rows: Bernoulli bandits n ∈ {10, 100} × k ∈ {5, 10, 50}; random tabular MDPs n ∈ {10, 25}. A row's
RL² policy is an `rlmeta train` run of its experiment file (`experiments/rl2_*.yaml`; a staged row
has one file per stage, each starting from the run before through `init_from`), on one machine or a
cluster alike. This module trains nothing: it measures such a run and the classic baselines
(`rlmeta.baselines`) on the same `--tasks` held-out tasks, one trial each, beside
the paper's RL² and Gittins (bandits) / PSRL (MDPs) figures:

    rlmeta train experiments/rl2_bandit_k5_n10.yaml --run-dir runs/rl2_tables/bandit-10-5
    python -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-10-5 --merge
    python -m benchmarks.rl2_tables --only mdp-25 --merge     # the baselines of a row only

Writes benchmarks/results/rl2_tables.json and .md (or `--out DIR`); `--merge` keeps the other
rows. The markdown is a function of the JSON (`python -m benchmarks.rl2_tables_markdown`). A run
is read at its newest checkpoint (or the checkpoint given), with its training curve from its
metrics log; a warm-started run's table counts the steps behind its starting policy too, and
measures that policy beside the row, so that it says what training on the row added. Policies
saved by this module's earlier training loop (`runs/rl2_tables/<row>.pt`, the shipped rows') are
read as well.

Settings are chosen between two trained policies of a row on validation tasks, a third task
stream, so that the held-out figure is not also the one the choice was made on:

    python -m benchmarks.rl2_tables --compare runs/rl2_tables/bandit-100-50 runs/other

How a row acts in the table is chosen the same way: its policy plays the validation tasks
sampling its actions (as in training) and acting on its most probable action; the table reports
the mode only where it scored more there (paired), and shows both held-out figures. Runs of a
row's file with other seeds (`rlmeta train ... --set seed=N`) are measured beside it with
`--seed-spread`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.rl2_tables_markdown import PAIRED_REFERENCES, cell, markdown, mean_se
from rlmeta import checkpoint, warm_start
from rlmeta.algorithm import TaskSpec
from rlmeta.baselines import (
    BANDIT_AGENTS,
    BAYES_OPTIMAL_MAX_PULLS,
    MDP_POLICIES,
    BayesOptimalBandit,
    bandit_episode_returns,
    bayes_optimal_trial_value,
    mdp_episode_returns,
)
from rlmeta.config import ExperimentConfig
from rlmeta.config_io import config_from_dict
from rlmeta.metrics import METRICS_FILE
from rlmeta.rl2 import ACTION_MODES, RL2Algorithm
from rlmeta.run.evaluation import starting_weights
from rlmeta.run.train import CONFIG_FILE
from rlmeta.tasks import make_task_env, sample_tasks

# Duan et al. 2016, Table 1 (bandits: (n, k) -> figures) and Table 2 (MDPs: n -> figures).
PAPER_BANDIT = {
    (10, 5): {"gittins": 6.6, "rl2": 6.7},
    (10, 10): {"gittins": 6.6, "rl2": 6.7},
    (10, 50): {"gittins": 6.5, "rl2": 6.8},
    (100, 5): {"gittins": 78.3, "rl2": 78.7},
    (100, 10): {"gittins": 82.8, "rl2": 83.5},
    (100, 50): {"gittins": 85.2, "rl2": 84.9},
}
PAPER_MDP = {10: {"psrl": 138.1, "rl2": 156.2}, 25: {"psrl": 408.8, "rl2": 445.7}}

TABLE_DIR = Path(__file__).parent / "results"
# What a row's training curve records at each logged update, besides its counts and time.
CURVE_METRICS = ("return/trial", "entropy", "approx_kl", "explained_variance")
LOG_EVERY = 10  # updates between a row's curve points, read from its run's metrics log


def is_shipped_table(out: Path) -> bool:
    return out.resolve() == TABLE_DIR.resolve()


@dataclass
class Row:
    """One table row: a task family and the number of episodes in a trial."""

    family: str  # bandit or mdp
    episodes: int  # n
    arms: int = 0  # k, bandits only

    @property
    def name(self) -> str:
        return f"bandit-{self.episodes}-{self.arms}" if self.family == "bandit" else (
            f"mdp-{self.episodes}"
        )

    @property
    def env_id(self) -> str:
        return "rlmeta/Bandit-v0" if self.family == "bandit" else "rlmeta/TabularMDP-v0"

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return {"arms": self.arms} if self.family == "bandit" else {}


ROWS = [Row("bandit", n, k) for n in (10, 100) for k in (5, 10, 50)] + [
    Row("mdp", 10),
    Row("mdp", 25),
]


@dataclass
class Training:
    """A trained policy of a row and what the table reports of its training."""

    algorithm: RL2Algorithm
    config: ExperimentConfig
    env_steps: int = 0
    updates: int = 0
    seconds: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)  # every `LOG_EVERY` updates
    init_from: dict[str, Any] | None = None  # the policy training started from, if any


def fresh_algorithm(config: ExperimentConfig) -> RL2Algorithm:
    """An untrained RL2Algorithm of `config`, for its env's spaces: weights are loaded into it."""
    env = make_task_env(config.env, **config.env_kwargs)
    return RL2Algorithm(config, env.observation_space, env.action_space)


def restored_algorithm(config: ExperimentConfig, state: dict[str, Any]) -> RL2Algorithm:
    """The RL2Algorithm a checkpoint's runtime state holds (weights, optimizer, update count)."""
    algorithm = fresh_algorithm(config)
    algorithm.load_state_dict(state["runtime"]["algorithm"])
    return algorithm


def load_policy(path: Path) -> tuple[Row, Training, str]:
    """A trained policy of a row: an `rlmeta train` run of RL² on the row's tasks (its directory,
    read at its newest checkpoint, or one of its checkpoints), or a policy saved by this module's
    earlier training loop. Returns the row, the training run restored and its command."""
    state = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(path))
    saved = state.get("rl2_tables")
    if saved is None:
        return _train_run_policy(path, state)
    if not isinstance(saved, dict):
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} has an 'rl2_tables' entry that is not a record; expected "
            f"the row, curve and command benchmarks.rl2_tables saved"
        )
    row = next(r for r in ROWS if r.name == saved["row"])
    config = config_from_dict(state["config"])
    run = Training(restored_algorithm(config, state), config, state["env_steps"],
                   state["iteration"], saved["seconds"], saved["curve"],
                   state.get(warm_start.RECORD_KEY, saved.get("init_from")))
    return row, run, saved["command"]


def row_of(config: ExperimentConfig, source: str) -> Row:
    """The table row whose tasks and trial length `config` trains RL² on."""
    if config.algorithm != "rl2":
        raise ValueError(f"{source} trains {config.algorithm!r}; expected an RL² run (rl2)")
    got = (config.env, dict(config.env_kwargs), config.rl2.episodes_per_trial)
    for row in ROWS:
        if (row.env_id, row.env_kwargs, row.episodes) == got:
            return row
    raise ValueError(f"{source} is RL² on (env, env_kwargs, episodes_per_trial) = {got}, no row "
                     f"of the table; expected Bandit-v0 with arms 5, 10 or 50 and 10 or 100 "
                     f"episodes, or TabularMDP-v0 with no kwargs and 10 or 25 episodes")


def _train_run_policy(path: Path, state: dict[str, Any]) -> tuple[Row, Training, str]:
    """An `rlmeta train` checkpoint as a row's policy: its training curve read from the run's
    metrics log (every `LOG_EVERY` updates), up to the checkpoint's iteration."""
    if "config" not in state or not state["config"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} was written neither by `rlmeta train` nor by "
            f"benchmarks.rl2_tables: expected a run's config or an 'rl2_tables' entry"
        )
    config = config_from_dict(state["config"])
    row = row_of(config, f"checkpoint {str(path)!r}")
    run_dir = Path(path) if Path(path).is_dir() else Path(path).resolve().parent.parent
    logged = {}  # by update: a resumed run logs again the updates after its last checkpoint
    metrics_log = run_dir / METRICS_FILE
    if metrics_log.is_file():
        for line in metrics_log.read_text().splitlines():
            point = json.loads(line)
            updates = point["iteration"] + 1
            if updates % LOG_EVERY == 0 and updates <= state["iteration"]:
                logged[updates] = {"updates": updates, "env_steps": point["env_steps"],
                                   "seconds": round(point["time_s"], 1),
                                   **{key: point[key] for key in CURVE_METRICS if key in point}}
    curve = [logged[updates] for updates in sorted(logged)]
    run = Training(restored_algorithm(config, state), config, state["env_steps"],
                   state["iteration"], state["time_s"], curve,
                   _with_row(state.get(warm_start.RECORD_KEY)))
    if not (run_dir / CONFIG_FILE).is_file():  # a checkpoint copied out of its run directory
        return row, run, f"rlmeta train (the config stored in {path})"
    return row, run, f"rlmeta train {run_dir / CONFIG_FILE} --run-dir {run_dir}"


def _with_row(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's start record with the row its starting policy was trained on, read from that
    checkpoint's config (the table names it: "from mdp-10's policy"); without it if that
    checkpoint cannot be read any more."""
    if record is None or "row" in record:
        return record
    try:
        state = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(record["checkpoint"]))
        row = row_of(config_from_dict(state["config"]), record["checkpoint"])
    except (checkpoint.CheckpointError, ValueError):
        return record
    return {**record, "row": row.name}


def evaluate_rl2(
    algorithm: RL2Algorithm,
    config: ExperimentConfig,
    tasks: list[Any],
    seed: int,
    batch: int,
    actions: str = "sample",
) -> np.ndarray:
    """Return of each episode of one trial per held-out task, `[tasks, episodes_per_trial]`,
    `batch` tasks per `RL2Algorithm.run_tasks` call; held-out task i resets with seed
    `seed + i`. `actions`: sample, or act on the policy's mode."""
    returns = np.zeros((len(tasks), config.rl2.episodes_per_trial))
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(min(batch, len(tasks)))]
    for start in range(0, len(tasks), batch):
        chunk = [TaskSpec(start + k, task, seed + start + k)
                 for k, task in enumerate(tasks[start : start + batch])]
        results = algorithm.run_tasks(envs, chunk, algorithm.updates, num_trials=1,
                                      actions=actions)
        returns[start : start + len(chunk)] = [r.rollouts[0].episode_returns()[0]
                                               for r in results]
    return returns


def measure_starting_policy(
    run: Training, tasks: list[Any], seed: int, batch: int, actions: str, row_returns: np.ndarray
) -> dict[str, Any]:
    """The policy a warm-started row began from, read again from the checkpoint its start record
    names, on the row's held-out tasks and env seeds and acting as the row does: what training
    on this row added, paired task by task with the row's `row_returns` (`[tasks, episodes]`).
    Only a note if that checkpoint is gone or now holds other weights."""
    assert run.init_from is not None
    weights, notes = starting_weights(run.init_from, "rl2")
    if weights is None:
        return {"note": notes[0]}
    start = fresh_algorithm(run.config)
    start.set_weights(weights)
    returns = evaluate_rl2(start, run.config, tasks, seed, batch, actions)
    return {"held_out": summary(returns.sum(axis=1)), "per_episode": episode_means(returns),
            "rl2_minus_start": summary(row_returns.sum(axis=1) - returns.sum(axis=1))}


def baselines(row: Row, tasks: list[Any], seed: int) -> dict[str, np.ndarray]:
    """Each baseline's return per episode of one trial per task, `[tasks, episodes]`."""
    env = make_task_env(row.env_id, **row.env_kwargs)
    if row.family == "bandit":
        agents = dict(BANDIT_AGENTS)
        if row.episodes <= BAYES_OPTIMAL_MAX_PULLS:
            agents["bayes_optimal"] = BayesOptimalBandit
        return {
            name: bandit_episode_returns(env, tasks, row.episodes, agent, seed)
            for name, agent in agents.items()
        }
    return {
        name: mdp_episode_returns(env, tasks, row.episodes, name, seed)
        for name in MDP_POLICIES
    }


def bayes_optimal_expectation(row: Row) -> float | None:
    """Exact expected trial reward of Bayes-optimal play, where it is solvable (short bandits)."""
    if row.family != "bandit" or row.episodes > BAYES_OPTIMAL_MAX_PULLS:
        return None
    return bayes_optimal_trial_value(row.arms, row.episodes)


def _task_stream(row: Row, count: int, key: list[int]) -> list[Any]:
    probe = make_task_env(row.env_id, **row.env_kwargs)
    return sample_tasks(probe, count, np.random.default_rng(key))


def held_out_tasks(row: Row, count: int, seed: int) -> tuple[list[Any], int]:
    """The row's held-out tasks, a stream the training loop (seeded with the config's seed)
    never draws from, and the reset seed of the first task's env (task i uses it + i)."""
    return _task_stream(row, count, [seed, 1_000_003]), 7_000_000 + seed


def validation_tasks(row: Row, count: int, seed: int) -> tuple[list[Any], int]:
    """Tasks for choosing between trained policies, drawn from neither the training stream nor
    the held-out one, so the table's figure is not also the figure a choice was made on."""
    return _task_stream(row, count, [seed, 2_000_003]), 8_000_000 + seed


def compare_policies(
    base: Path, candidate: Path, count: int, seed: int, batch: int
) -> dict[str, Any]:
    """Two trained policies of one row on the same validation tasks and env seeds: each one's
    return per trial and the candidate's paired gain over the base."""
    row, base_run, _ = load_policy(base)
    candidate_row, candidate_run, _ = load_policy(candidate)
    if candidate_row != row:
        raise ValueError(f"--compare needs two policies of one row; got {row.name} ({base}) "
                         f"and {candidate_row.name} ({candidate})")
    tasks, env_seed = validation_tasks(row, count, seed)
    returns = [evaluate_rl2(run.algorithm, run.config, tasks, env_seed, batch).sum(axis=1)
               for run in (base_run, candidate_run)]
    return {"row": row.name, "tasks": count, "base": summary(returns[0]),
            "candidate": summary(returns[1]),
            "candidate_minus_base": summary(returns[1] - returns[0])}


def choose_actions(run: Training, row: Row, count: int, seed: int, batch: int) -> dict[str, Any]:
    """Sample or act on the mode: the policy plays `count` validation tasks both ways, and the
    mode is chosen only if its paired gain there is positive (sampling is how it was trained)."""
    tasks, env_seed = validation_tasks(row, count, seed)
    returns = {
        actions: evaluate_rl2(run.algorithm, run.config, tasks, env_seed, batch, actions).sum(1)
        for actions in ACTION_MODES
    }
    gain = summary(returns["mode"] - returns["sample"])
    return {"chosen": "mode" if gain["mean"] > 0 else "sample", "validation_tasks": count,
            **{actions: summary(values) for actions, values in returns.items()},
            "mode_minus_sample": gain}


def seed_spread(paths: list[Path], count: int, seed: int, batch: int) -> tuple[str, list[dict]]:
    """Policies of one row trained alike but for the training seed, each measured as the table
    measures a row: its way of acting chosen on validation tasks, then the held-out tasks.
    Returns the row's name and one entry per seed, in seed order."""
    if len(paths) < 2:
        raise ValueError(f"--seed-spread needs policies of at least two training seeds; got "
                         f"{len(paths)}")
    # Everything is checked before anything is measured: a wrong file fails at once, not after
    # minutes of evaluating the others.
    loaded = [(path, *load_policy(path)[:2]) for path in paths]
    rows = sorted({row.name for _, row, _ in loaded})
    if len(rows) != 1:
        raise ValueError(f"--seed-spread needs policies of one row; got rows {rows}")
    budgets = sorted({run.env_steps for _, _, run in loaded})
    if len(budgets) != 1:
        raise ValueError(f"--seed-spread needs policies trained for the same env steps; got "
                         f"{budgets}")
    seeds = [run.config.seed for _, _, run in loaded]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed-spread needs one policy per training seed; got seeds {seeds}")
    row = loaded[0][1]
    tasks, eval_seed = held_out_tasks(row, count, seed)
    entries = []
    for path, _, run in loaded:
        actions = choose_actions(run, row, count, seed, batch)
        held_out = evaluate_rl2(run.algorithm, run.config, tasks, eval_seed, batch,
                                actions["chosen"])
        entries.append({"seed": run.config.seed, "acts": actions["chosen"],
                        "held_out": summary(held_out.sum(axis=1)), "env_steps": run.env_steps,
                        "checkpoint": str(path)})
    return row.name, sorted(entries, key=lambda e: e["seed"])


def record_seed_spread(out: Path, row_name: str, entries: list[dict]) -> None:
    """Store a row's seed spread beside it in `out`; the row's own policy must be among the
    seeds (same seed, same env steps), so the spread is of the figure the table shows."""
    stored = {r["row"]: r for r in json.loads((out / "rl2_tables.json").read_text())["rows"]}
    result = stored.get(row_name)
    if result is None or not result["rl2_trained"]:
        raise ValueError(f"--seed-spread: row {row_name} has no trained RL² figure in "
                         f"{out / 'rl2_tables.json'}; expected the row to be measured first")
    own = (result["rl2_settings"]["seed"], result["rl2_env_steps"])
    if own not in [(e["seed"], e["env_steps"]) for e in entries]:
        raise ValueError(f"--seed-spread: row {row_name} is seed {own[0]} at {own[1]:,} steps, "
                         f"which none of the policies given is; expected it among them")
    result["rl2_seed_spread"] = entries
    write_tables(out, {row_name: result}, merge=True)


def summary(returns: np.ndarray) -> dict[str, float]:
    """Mean and standard error of per-task figures."""
    return {
        "mean": float(returns.mean()),
        "se": float(returns.std(ddof=1) / np.sqrt(len(returns))),
    }


def episode_means(returns: np.ndarray) -> list[float]:
    """Mean return at each episode index of a trial over tasks: the adaptation curve."""
    return [round(float(value), 4) for value in returns.mean(axis=0)]


def measure_row(
    row: Row, args: argparse.Namespace, command: str, trained: Training | None = None
) -> dict[str, Any]:
    """The row's table entry: the baselines and, given a `trained` policy, RL² measured as the
    table measures it (its way of acting chosen on validation tasks)."""
    started = time.perf_counter()
    tasks, eval_seed = held_out_tasks(row, args.tasks, args.seed)
    per_episode = baselines(row, tasks, eval_seed)
    actions = start = None
    if trained is not None:
        actions = choose_actions(trained, row, args.tasks, args.seed, args.eval_batch)
        both = {mode: evaluate_rl2(trained.algorithm, trained.config, tasks, eval_seed,
                                   args.eval_batch, mode)
                for mode in ACTION_MODES}
        per_episode["rl2"] = both[actions["chosen"]]
        # Both figures are kept, so that the choice made on validation tasks can be checked.
        actions["held_out"] = {mode: summary(values.sum(axis=1)) for mode, values in both.items()}
        if trained.init_from is not None:
            start = measure_starting_policy(trained, tasks, eval_seed, args.eval_batch,
                                            actions["chosen"], per_episode["rl2"])
    measured = {name: returns.sum(axis=1) for name, returns in per_episode.items()}
    paired = {}
    for reference in PAIRED_REFERENCES:
        if "rl2" in measured and reference in measured:
            # Same tasks and the same env seeds, hence the same reward draw at every step: the
            # per-task difference is far less noisy than either column.
            paired[f"rl2_minus_{reference}"] = summary(measured["rl2"] - measured[reference])
    if row.family == "bandit":
        paper = PAPER_BANDIT[(row.episodes, row.arms)]
    else:
        paper = PAPER_MDP[row.episodes]
    config = None if trained is None else trained.config
    return {
        "row": row.name,
        "family": row.family,
        "n": row.episodes,
        "k": row.arms or None,
        "measured": {name: summary(values) for name, values in measured.items()},
        "per_episode": {name: episode_means(returns) for name, returns in per_episode.items()},
        "paired": paired,
        "paper": paper,
        "bayes_optimal_expected": bayes_optimal_expectation(row),
        "rl2_trained": trained is not None,
        "rl2_actions": actions,
        "rl2_env_steps": 0 if trained is None else trained.env_steps,
        "rl2_init_from": None if trained is None else trained.init_from,
        "rl2_start": start,
        "rl2_updates": 0 if trained is None else trained.updates,
        "rl2_train_seconds": 0.0 if trained is None else trained.seconds,
        "rl2_settings": None if config is None else {
            "seed": config.seed, "policy": config.policy.model_dump(),
            "rl2": config.rl2.model_dump()},
        "rl2_curve": [] if trained is None else trained.curve,
        "eval_tasks": args.tasks,
        # Training plus this measurement, on a machine shared with other jobs.
        "wall_seconds": (0.0 if trained is None else trained.seconds)
        + time.perf_counter() - started,
        "command": command,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="held-out evaluation tasks")
    parser.add_argument("--only", nargs="*", default=None,
                        help=f"rows whose baselines to measure (RL² comes from --evaluate), of "
                             f"{', '.join(r.name for r in ROWS)}")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other rows already in the output JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation task streams")
    parser.add_argument("--eval-batch", type=int, default=100, help="tasks per evaluation batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=TABLE_DIR,
                        metavar="DIR", help="directory for rl2_tables.md and rl2_tables.json")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--evaluate", type=Path, default=None, metavar="RUN",
                      help="measure an `rlmeta train` RL² run as its row (its directory or a "
                           "checkpoint), or a policy saved by this module's earlier loop")
    what.add_argument("--compare", type=Path, nargs=2, default=None,
                      metavar=("BASE", "CANDIDATE"),
                      help="two trained policies of one row, paired on --tasks validation tasks "
                           "(not the held-out ones the table reports); writes nothing")
    what.add_argument("--seed-spread", nargs="+", type=Path, default=None, metavar="RUN",
                      help="runs of one row's file with other seeds, the row's own among them: "
                           "each is measured as the row was and recorded beside the row")
    what.add_argument("--refresh-baselines", action="store_true",
                      help="re-measure the baselines of the rows already in the output JSON "
                           "(adding any new ones), keeping their RL² results")
    args = parser.parse_args(argv)
    known = {r.name for r in ROWS}
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {sorted(known)}")
    if args.tasks < 2:
        parser.error(f"--tasks must be >= 2, got {args.tasks}")
    return args


def _row_arguments(argv: list[str]) -> list[str]:
    """`argv` without `--out` and `--merge`, which say where a row is written, not what it is."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--merge" and not arg.startswith("--out="):
            kept.append(arg)
    return kept


def refresh_baselines(out: Path, seed: int) -> None:
    """Re-measure the baselines of every row in `out`/rl2_tables.json on the row's own held-out
    tasks, adding baselines the row lacks and keeping its RL² results. The baselines are
    deterministic given the tasks and seed, so one that no longer reproduces its stored figure
    is an error, not an update."""
    rows = {r.name: r for r in ROWS}
    stored = json.loads((out / "rl2_tables.json").read_text())["rows"]
    refreshed = {}
    for result in stored:
        row = rows[result["row"]]
        tasks, eval_seed = held_out_tasks(row, result["eval_tasks"], seed)
        result.setdefault("per_episode", {})
        for name, returns in baselines(row, tasks, eval_seed).items():
            now = summary(returns.sum(axis=1))
            before = result["measured"].get(name)
            if before is not None and not math.isclose(before["mean"], now["mean"], abs_tol=1e-9):
                raise ValueError(
                    f"row {row.name}: baseline {name} no longer reproduces its stored figure "
                    f"({before['mean']:.4f} stored, {now['mean']:.4f} now); expected equal"
                )
            result["measured"][name] = now
            result["per_episode"][name] = episode_means(returns)
        result["bayes_optimal_expected"] = bayes_optimal_expectation(row)
        refreshed[row.name] = result
        print(f"{row.name}: baselines re-measured", flush=True)
    write_tables(out, refreshed, merge=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.refresh_baselines:
        refresh_baselines(args.out, args.seed)
        return
    if args.compare is not None:
        torch.set_num_threads(args.threads)
        result = compare_policies(*args.compare, args.tasks, args.seed, args.eval_batch)
        print(f"{result['row']}, {result['tasks']} validation tasks: base "
              f"{mean_se(result['base'])}, candidate {mean_se(result['candidate'])}, "
              f"candidate − base {mean_se(result['candidate_minus_base'])}")
        return
    if args.seed_spread is not None:
        torch.set_num_threads(args.threads)
        row_name, entries = seed_spread(args.seed_spread, args.tasks, args.seed, args.eval_batch)
        record_seed_spread(args.out, row_name, entries)
        for entry in entries:
            print(f"{row_name} seed {entry['seed']}: {mean_se(entry['held_out'])} "
                  f"({entry['acts']})")
        return
    command = "python -m benchmarks.rl2_tables " + " ".join(
        shlex.quote(a) for a in _row_arguments(sys.argv[1:] if argv is None else argv)
    )
    torch.set_num_threads(args.threads)
    rows = [r for r in ROWS if args.only is None or r.name in args.only]
    trained = None
    if args.evaluate is not None:
        row, trained, command = load_policy(args.evaluate)
        if args.only is not None and args.only != [row.name]:
            raise SystemExit(f"--evaluate {args.evaluate} holds row {row.name}; "
                             f"expected it to match --only {' '.join(args.only)}")
        rows = [row]
    if len(rows) < len(ROWS) and not args.merge and is_shipped_table(args.out):
        # Each row's command under the table is printed without --merge and --out; run verbatim,
        # it would rewrite the shipped table as that one row.
        raise SystemExit(f"writing rows {[r.name for r in rows]} into the shipped table without "
                         f"--merge would drop its other rows; expected --merge, or --out DIR "
                         f"for a table of its own")
    if trained is None and is_shipped_table(args.out):
        # A row of baselines only would replace a trained row, RL² figures and all.
        stored = args.out / "rl2_tables.json"
        rows_trained = {r["row"] for r in json.loads(stored.read_text())["rows"]
                        if r["rl2_trained"]} if stored.is_file() else set()
        if any(row.name in rows_trained for row in rows):
            raise SystemExit(f"the shipped table's rows {sorted(rows_trained)} hold RL² results "
                             f"that measuring their baselines alone would drop; expected "
                             f"--refresh-baselines, which keeps them, or --out DIR")
    results = {}
    for row in rows:
        result = measure_row(row, args, command, trained)
        results[row.name] = result
        measured = result["measured"]
        print(f"{row.name}: RL² {cell(result, 'rl2')} (paper {result['paper']['rl2']}, random "
              f"{measured['random']['mean']:.2f}), {result['rl2_env_steps']:,} steps, "
              f"{result['wall_seconds']:.0f} s", flush=True)
    write_tables(args.out, results, args.merge)


def write_tables(out: Path, trained: dict[str, dict], merge: bool) -> None:
    """Write rl2_tables.json and .md: the rows just `trained`, plus (with `merge`) the rows
    already in the file. Rows are trained in parallel runs, so the file is read only now, under
    an exclusive lock, never at start-up: a run must not drop a row another run wrote meanwhile."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "rl2_tables.json"
    with open(json_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = {}
        if merge and json_path.stat().st_size > 0:
            rows = {r["row"]: r for r in json.loads(json_path.read_text())["rows"]}
        rows.update(trained)
        results = [rows[r.name] for r in ROWS if r.name in rows]
        (out / "rl2_tables.md").write_text(markdown(results))
        json_path.write_text(json.dumps({"rows": results}, indent=2))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, checkpoint.CheckpointError) as error:
        raise SystemExit(f"benchmarks.rl2_tables: {error}") from None
