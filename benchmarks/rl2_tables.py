"""The RL² paper's tables (Duan et al. 2016, Tables 1 and 2), measured side by side in one run.

For each row (Bernoulli bandits n ∈ {10, 100} × k ∈ {5, 10, 50}; random tabular MDPs n ∈ {10, 25})
this trains RL² with rlmeta for `--budget` env steps, then evaluates it and the classic baselines
(`benchmarks.baselines_bandit_mdp`) on the same `--tasks` held-out tasks, one trial each. The
paper's RL² and Gittins (bandits) / PSRL (MDPs) figures sit in the same table for reference.

    python -m benchmarks.rl2_tables --budget 20000          # smoke: a few minutes on one core
    python -m benchmarks.rl2_tables --budget 5000000 --only bandit-10-5

Writes benchmarks/results/rl2_tables.md and .json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.baselines_bandit_mdp import (
    BANDIT_AGENTS,
    MDP_POLICIES,
    bandit_trial_returns,
    mdp_trial_returns,
)
from rlmeta.config import ExperimentConfig, PolicyConfig, RL2Config
from rlmeta.rl2 import RecurrentActor, RL2Algorithm
from rlmeta.rollout import sample_rollout
from rlmeta.tasks import make_task_env, sample_tasks, set_task
from rlmeta.train import draw_task_specs

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


def rl2_config(row: Row, args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(
        algorithm="rl2",
        env=row.env_id,
        env_kwargs=row.env_kwargs,
        seed=args.seed,
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(
            meta_batch_size=args.meta_batch,
            trials_per_task=args.trials_per_task,
            episodes_per_trial=row.episodes,
            hidden_size=args.hidden_size,
            lr=args.lr,
            gamma=args.gamma,
            epochs=args.epochs,
            minibatches=args.minibatches,
            entropy_coef=args.entropy_coef,
        ),
    )


def train_rl2(config: ExperimentConfig, budget: int, n_envs: int) -> tuple[RL2Algorithm, int, int]:
    """Train until `budget` env steps; returns (algorithm, env steps, updates)."""
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(n_envs)]
    torch.manual_seed(config.seed)
    algorithm = RL2Algorithm(config, envs[0].observation_space, envs[0].action_space)
    rng = np.random.default_rng(config.seed)
    env_steps = updates = 0
    while env_steps < budget:
        specs = draw_task_specs(envs[0], config.rl2.meta_batch_size, rng)
        results = [algorithm.run_task(envs, spec, updates) for spec in specs]
        algorithm.update(results)
        env_steps += sum(result.env_steps for result in results)
        updates += 1
    return algorithm, env_steps, updates


def evaluate_rl2(
    algorithm: RL2Algorithm, config: ExperimentConfig, tasks: list[Any], seed: int, batch: int
) -> np.ndarray:
    """Return of one trial per task.

    Benchmark-only batching: each env of a batch is set to a *different* task and runs exactly
    one trial (as many envs as trials, so no slot restarts), so one policy forward serves
    `batch` tasks. `run_task` keeps one task per call, which is the training contract.
    """
    totals = np.zeros(len(tasks))
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(min(batch, len(tasks)))]
    for start in range(0, len(tasks), batch):
        chunk = tasks[start : start + batch]
        for env, task in zip(envs, chunk, strict=False):
            set_task(env, task)
        actor = RecurrentActor(algorithm.policy, torch.Generator().manual_seed(seed + start))
        rollout = sample_rollout(
            envs[: len(chunk)],
            actor,
            num_sequences=len(chunk),
            episodes_per_sequence=config.rl2.episodes_per_trial,
            seed=seed + start,
        )
        totals[start : start + len(chunk)] = rollout.episode_returns().sum(axis=1)
    return totals


def baselines(row: Row, tasks: list[Any], seed: int) -> dict[str, np.ndarray]:
    env = make_task_env(row.env_id, **row.env_kwargs)
    if row.family == "bandit":
        return {
            name: bandit_trial_returns(env, tasks, row.episodes, agent, seed)
            for name, agent in BANDIT_AGENTS.items()
        }
    return {name: mdp_trial_returns(env, tasks, row.episodes, name, seed) for name in MDP_POLICIES}


def summary(returns: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(returns.mean()),
        "se": float(returns.std(ddof=1) / np.sqrt(len(returns))),
    }


def run_row(row: Row, args: argparse.Namespace) -> dict[str, Any]:
    config = rl2_config(row, args)
    started = time.perf_counter()
    algorithm, env_steps, updates = train_rl2(config, args.budget, args.envs)
    train_seconds = time.perf_counter() - started
    # Held-out tasks: a stream the training loop (seeded with args.seed) never draws from.
    probe = make_task_env(row.env_id, **row.env_kwargs)
    tasks = sample_tasks(probe, args.tasks, np.random.default_rng([args.seed, 1_000_003]))
    eval_seed = 7_000_000 + args.seed
    measured = {"rl2": evaluate_rl2(algorithm, config, tasks, eval_seed, args.eval_batch)}
    measured.update(baselines(row, tasks, eval_seed))
    if row.family == "bandit":
        paper = PAPER_BANDIT[(row.episodes, row.arms)]
    else:
        paper = PAPER_MDP[row.episodes]
    return {
        "row": row.name,
        "family": row.family,
        "n": row.episodes,
        "k": row.arms or None,
        "measured": {name: summary(values) for name, values in measured.items()},
        "paper": paper,
        "rl2_env_steps": env_steps,
        "rl2_updates": updates,
        "rl2_train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
    }


def _cell(result: dict[str, Any], name: str) -> str:
    value = result["measured"][name]
    return f"{value['mean']:.2f} ± {value['se']:.2f}"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# RL² tables (Duan et al. 2016, Tables 1 and 2), measured by rlmeta",
        "",
        f"Budget {args.budget:,} env steps of RL² training per row; every measured column is the "
        f"mean ± standard error of one trial's total reward over the same {args.tasks} held-out "
        f"tasks. RL²: GRU {args.hidden_size}, lr {args.lr}, {args.meta_batch} tasks × "
        f"{args.trials_per_task} trials per update, seed {args.seed}. Baselines are untuned "
        "(UCB1 c=√2; ε = 0.1); *paper* columns are copied from the paper, not measured.",
        "",
    ]
    bandits = [r for r in results if r["family"] == "bandit"]
    if bandits:
        lines += [
            "## Bernoulli bandits",
            "",
            "| n, k | Random | TS | UCB1 | ε-greedy | greedy | RL² (rlmeta) | RL² (paper) | "
            "Gittins (paper) | RL² env steps | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in bandits:
            cells = [_cell(r, name) for name in
                     ("random", "thompson", "ucb1", "eps_greedy", "greedy", "rl2")]
            lines.append(
                f"| {r['n']}, {r['k']} | " + " | ".join(cells)
                + f" | {r['paper']['rl2']} | {r['paper']['gittins']} | {r['rl2_env_steps']:,} | "
                f"{r['wall_seconds']:.0f} |"
            )
        lines.append("")
    mdps = [r for r in results if r["family"] == "mdp"]
    if mdps:
        lines += [
            "## Random tabular MDPs",
            "",
            "| n | Random | ε-greedy | greedy | RL² (rlmeta) | RL² (paper) | PSRL (paper) | "
            "RL² env steps | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in mdps:
            cells = [_cell(r, name) for name in ("random", "eps_greedy", "greedy", "rl2")]
            lines.append(
                f"| {r['n']} | " + " | ".join(cells)
                + f" | {r['paper']['rl2']} | {r['paper']['psrl']} | {r['rl2_env_steps']:,} | "
                f"{r['wall_seconds']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2_000_000, help="RL² env steps per row")
    parser.add_argument("--tasks", type=int, default=1000, help="held-out evaluation tasks")
    parser.add_argument("--only", nargs="*", default=None,
                        help=f"rows to run, of {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--trials-per-task", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--entropy-coef", type=float, default=0.01)
    parser.add_argument("--envs", type=int, default=8, help="envs stepped together in training")
    parser.add_argument("--eval-batch", type=int, default=100, help="tasks per evaluation batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    known = {r.name for r in ROWS}
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {sorted(known)}")
    if args.budget < 1 or args.tasks < 2:
        parser.error(f"--budget must be >= 1 and --tasks >= 2, got {args.budget}, {args.tasks}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r for r in ROWS if args.only is None or r.name in args.only]
    results = []
    for row in rows:
        result = run_row(row, args)
        results.append(result)
        rl2, paper = result["measured"]["rl2"], result["paper"]["rl2"]
        print(f"{row.name}: RL² {rl2['mean']:.2f} ± {rl2['se']:.2f} (paper {paper}), "
              f"{result['rl2_env_steps']:,} steps, {result['wall_seconds']:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rl2_tables.md").write_text(markdown(results, args))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "rl2_tables.json").write_text(
        json.dumps({"settings": settings, "rows": results}, indent=2)
    )


if __name__ == "__main__":
    main()
