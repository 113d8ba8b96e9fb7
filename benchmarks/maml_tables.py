"""The MAML-RL paper's fast-adaptation curves (Finn et al. 2017, §5.3, Figs. 5-6) as tables.

For each env this trains three policies with `rlmeta.run.train.train` and evaluates them with
`rlmeta.run.evaluation.evaluate` on the same held-out tasks (the evaluation's test stream, same
seed):

- **MAML**: the shipped experiment config (TRPO, 1 inner step at lr 0.1, max KL 0.01);
- **pretrained**: `maml.inner_steps: 0`, i.e. one policy trained on all tasks with the same TRPO
  step; its meta-batch holds `inner_steps + 1` times as many tasks so that it uses the same env
  steps per iteration, while `episodes_per_task` (the episodes per evaluation step) is unchanged;
- **oracle**: as pretrained, on `rlmeta_envs.wrappers:TaskInObservation`, so the task is seen;
- **random init**: the runs' own untrained initial weights, reported by `evaluate` beside MAML.

MAML, pretrained and random init are fine-tuned at evaluation with 0..3 policy-gradient steps
(`maml.eval_inner_lrs`: 0.1 then 0.05); the oracle is evaluated without adaptation and its
step-0 return fills every column. The normalised score after one step is
(MAML − random init) / (oracle − random init).

    python -m benchmarks.maml_tables --quick                       # smoke run, a minute or two
    python -m benchmarks.maml_tables --envs navigation2d           # the paper's 100 iterations
    python -m benchmarks.maml_tables --envs halfcheetah_vel --iterations 20 --eval-tasks 20

Writes benchmarks/results/maml_<env>.md and .json (`--quick`: under /tmp unless `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlmeta import checkpoint
from rlmeta.config import ExperimentConfig
from rlmeta.config_io import config_from_dict, config_to_dict, load_config
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run.evaluation import EvaluationReport, Summary, evaluate
from rlmeta.run.train import train

ROOT = Path(__file__).resolve().parent.parent
ORACLE_ENV = "rlmeta_envs.wrappers:TaskInObservation"
ADAPT_STEPS = 3  # the paper's curves: 0..3 gradient steps
METHODS = ("maml", "pretrained", "random init", "oracle")
TRAINED = ("maml", "pretrained", "oracle")


@dataclass
class EnvSetup:
    """One benchmark env: its shipped config and the changes the reproductions make."""

    config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    peer: dict[str, float] = field(default_factory=dict)


# Locomotion: meta-batch 40, 20 episodes, horizon 100 as in pytorch-maml-rl and ProMP.
_LOCOMOTION = {
    "env_kwargs": {"horizon": 100},
    "maml": {"meta_batch_size": 40, "episodes_per_task": 20},
}
# pytorch-maml-rl on this machine kind (docs/references.md, "The peer").
ENVS: dict[str, EnvSetup] = {
    "navigation2d": EnvSetup(
        "experiments/maml_navigation2d.yaml",
        peer={
            "train_iteration": 99, "train_return_step_0": -37.7, "train_return_step_1": -14.5,
            "heldout_tasks": 200, "heldout_return_step_0": -39.5,
            "heldout_return_step_1": -16.4, "s_per_iteration": 3.5, "env_steps_per_s": 22_800,
            "policy": "64x64 tanh",
        },
    ),
    "halfcheetah_vel": EnvSetup(
        "experiments/maml_halfcheetah_vel.yaml", _LOCOMOTION,
        peer={"s_per_iteration": 10.9, "env_steps_per_s": 14_600, "policy": "64x64 tanh"},
    ),
    "halfcheetah_dir": EnvSetup("experiments/maml_halfcheetah_dir.yaml", _LOCOMOTION),
}


def _merge(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validated(data: dict[str, Any]) -> ExperimentConfig:
    # Through config_from_dict so every derived config is checked like a YAML file.
    return config_from_dict(data)


def base_config(setup: EnvSetup, args: argparse.Namespace) -> ExperimentConfig:
    """The env's shipped config with the reproductions' changes and the command's budget."""
    data = _merge(config_to_dict(load_config(ROOT / setup.config)), setup.overrides)
    changes: dict[str, Any] = {"workers": args.workers, "eval_tasks": args.eval_tasks}
    if args.iterations is not None:
        changes["iterations"] = args.iterations
    if args.policy is not None:
        changes["policy"] = args.policy
    if args.quick:
        changes.update(iterations=args.iterations or 2, eval_tasks=args.eval_tasks)
        changes["maml"] = {"meta_batch_size": 4, "episodes_per_task": 4}
    data = _merge(data, changes)
    data["checkpoint_every"] = data["iterations"]  # only the final weights are evaluated
    return _validated(data)


def method_configs(base: ExperimentConfig) -> dict[str, ExperimentConfig]:
    """MAML as configured; pretrained and oracle with no inner step and equal env steps."""
    maml = config_to_dict(base)
    pretrained = _merge(maml, {"maml": {
        "inner_steps": 0,
        # MAML samples inner_steps + 1 rollouts per task; the same steps as more tasks keep
        # episodes_per_task, and so the evaluation's fine-tuning episodes, the same.
        "meta_batch_size": base.maml.meta_batch_size * (base.maml.inner_steps + 1),
    }})
    oracle = _merge(pretrained, {"env": ORACLE_ENV, "env_kwargs": {}})
    oracle["env_kwargs"] = {"wrapped": base.env, "wrapped_kwargs": dict(base.env_kwargs)}
    return {
        "maml": _validated(maml),
        "pretrained": _validated(pretrained),
        "oracle": _validated(oracle),
    }


def _returns(report: EvaluationReport, policy: str) -> list[Summary]:
    rows = [s for s in report.summaries if s.policy == policy and s.key.startswith("return/step_")]
    return sorted(rows, key=lambda s: s.x or 0)


def _curve(summaries: list[Summary]) -> list[dict[str, float]]:
    return [{"step": s.x, "mean": s.mean, "ci95": s.ci95, "tasks": s.tasks} for s in summaries]


def _finished_run(config: ExperimentConfig, run_dir: Path) -> bool:
    """True when `run_dir` holds a completed run of exactly `config`."""
    path = checkpoint.checkpoint_path(run_dir, config.iterations)
    if not path.exists():
        return False
    saved = checkpoint.load_checkpoint(path)["config"]
    return config_from_dict(saved) == config


def train_and_evaluate(
    name: str, config: ExperimentConfig, run_dir: Path, adapt_steps: int, workers: int,
    reuse: bool = False,
) -> dict[str, Any]:
    """Train `config` from scratch in `run_dir` (or, with `reuse`, keep a finished run of the
    same config there), then evaluate its final weights on held-out tasks."""
    train_wall, load_after_training = None, None
    if reuse and _finished_run(config, run_dir):
        print(f"[{name}] reusing the finished run in {run_dir}", flush=True)
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # train refuses a run dir with checkpoints; this one is ours
        print(f"[{name}] training {config.iterations} iterations in {run_dir}", flush=True)
        start = time.perf_counter()
        train(config, run_dir)
        train_wall = time.perf_counter() - start
        # Other work on the shared machine slows the run; the 1/5/15-minute load says how much.
        load_after_training = list(os.getloadavg())
    rows = read_metrics(run_dir / METRICS_FILE)
    last = rows[-1]
    start = time.perf_counter()
    report = evaluate(run_dir, config.eval_tasks, "test", adapt_steps, run_dir / "eval-test",
                      workers=workers)
    eval_wall = time.perf_counter() - start
    iterations = int(last["iteration"]) + 1
    failed = {policy: n for policy, n in report.failed_tasks.items() if n}
    if failed:
        raise RuntimeError(f"[{name}] evaluation lost tasks to env errors: {failed}")
    return {
        "run_dir": str(run_dir),
        "iterations": iterations,
        "env_steps": int(last["env_steps"]),
        "train_loop_s": float(last["time_s"]),
        "train_wall_s": train_wall,  # with Ray start-up and shutdown; None when reused
        "s_per_iteration": float(last["time_s"]) / iterations,
        "env_steps_per_s": int(last["env_steps"]) / float(last["time_s"]),
        **iteration_times(rows),
        "eval_wall_s": eval_wall,
        "load_avg_after_training": load_after_training,
        "train_returns_last": {k: float(v) for k, v in last.items()
                               if k.startswith("return/step_")},
        "train_returns_first": {k: float(v) for k, v in rows[0].items()
                                if k.startswith("return/step_")},
        "trpo_rejections": int(last.get("trpo/rejections_total", 0)),
        "eval": _curve(_returns(report, "meta-learned")),
        "eval_random_init": _curve(_returns(report, "random init")),
        "config": config_to_dict(config),
    }


def iteration_times(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median and fastest seconds per iteration: less sensitive than the mean to other work
    on the shared machine."""
    times = sorted(float(row["iteration_s"]) for row in rows)
    return {"median_iteration_s": times[len(times) // 2], "min_iteration_s": times[0]}


def normalised_score(method: float, random_init: float, oracle: float) -> float:
    """(method − random init) / (oracle − random init): 0 at random init, 1 at the oracle."""
    return (method - random_init) / (oracle - random_init)


def run_env(env_name: str, args: argparse.Namespace, command: str) -> dict[str, Any]:
    setup = ENVS[env_name]
    base = base_config(setup, args)
    runs = {}
    for method, config in method_configs(base).items():
        steps = 0 if method == "oracle" else ADAPT_STEPS
        run_dir = Path(args.run_root) / env_name / method.replace(" ", "_")
        runs[method] = train_and_evaluate(
            method, config, run_dir, steps, args.workers, reuse=args.reuse
        )
    curves = {method: runs[method]["eval"] for method in ("maml", "pretrained")}
    curves["random init"] = runs["maml"]["eval_random_init"]
    oracle = runs["oracle"]["eval"][0]
    curves["oracle"] = [{**oracle, "step": k} for k in range(ADAPT_STEPS + 1)]
    # Pretrained and MAML share architecture and seed, so their random-init rows must agree:
    # a check that every method saw the same held-out tasks and seeds.
    random_gap = max(abs(a["mean"] - b["mean"]) for a, b in zip(
        runs["maml"]["eval_random_init"], runs["pretrained"]["eval_random_init"], strict=True))
    scores = {
        method: [
            normalised_score(curves[method][k]["mean"], curves["random init"][k]["mean"],
                             oracle["mean"])
            for k in range(ADAPT_STEPS + 1)
        ]
        for method in ("maml", "pretrained")
    }
    return {
        "env": env_name,
        "env_id": base.env,
        "env_kwargs": base.env_kwargs,
        "command": command,
        "quick": args.quick,
        "eval_tasks": base.eval_tasks,
        "eval_inner_lrs": base.maml.eval_inner_lrs,
        "episodes_per_eval_step": base.maml.episodes_per_task,
        "workers": base.workers,
        "torch_threads": torch.get_num_threads(),
        "curves": curves,
        "normalised_score": scores,
        "random_init_gap_maml_vs_pretrained": random_gap,
        "runs": {method: {k: v for k, v in run.items() if k != "eval_random_init"}
                 for method, run in runs.items()},
        "peer": setup.peer,
    }


def _cell(point: dict[str, float]) -> str:
    return f"{point['mean']:.2f} ± {point['ci95']:.2f}"


def format_markdown(result: dict[str, Any]) -> str:
    """The tables a person reads: returns by inner step, score, cost, peer comparison."""
    runs, curves = result["runs"], result["curves"]
    maml_cfg = runs["maml"]["config"]["maml"]
    lines = [
        f"# MAML-RL fast adaptation: {result['env_id']} {result['env_kwargs'] or ''}".rstrip(),
        "",
        "Command (from the repository root):",
        "",
        f"    {result['command']}",
        "",
    ]
    if result["quick"]:
        lines += ["**Smoke run (`--quick`): tiny budgets, numbers mean nothing.**", ""]
    lines += [
        f"Mean return per episode on {result['eval_tasks']} held-out tasks (the same tasks and "
        f"seeds for every method), ± the 95% t-interval half-width over tasks. Fine-tuning: "
        f"{result['episodes_per_eval_step']} episodes per step, vanilla policy gradient with "
        f"step sizes {result['eval_inner_lrs']} (first, then every later step). The oracle is "
        f"evaluated without adaptation; its one number fills every column.",
        "",
        "| method | 0 steps | 1 step | 2 steps | 3 steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method in METHODS:
        lines.append(f"| {method} | " + " | ".join(_cell(p) for p in curves[method]) + " |")
    score = result["normalised_score"]
    lines += [
        "",
        f"Normalised score after 1 step, (method − random init) / (oracle − random init): "
        f"**MAML {score['maml'][1]:.3f}**, pretrained {score['pretrained'][1]:.3f} "
        f"(after 3 steps: MAML {score['maml'][3]:.3f}, pretrained {score['pretrained'][3]:.3f}).",
    ]
    oracle, random_1 = curves["oracle"][1], curves["random init"][1]
    if oracle["mean"] - random_1["mean"] <= oracle["ci95"] + random_1["ci95"]:
        lines.append(
            "The oracle does not clearly beat random init at this budget (the intervals "
            "overlap), so the normalised score is not meaningful here."
        )
    lines += [
        "",
        "## What was run",
        "",
        f"All trained with TRPO (max KL {maml_cfg['max_kl']}, CG {maml_cfg['cg_iters']} "
        f"iterations), policy {runs['maml']['config']['policy']['hidden_sizes']} "
        f"{runs['maml']['config']['policy']['activation']}, {result['workers']} Ray rollout "
        f"workers, seed {runs['maml']['config']['seed']}. MAML: meta-batch "
        f"{maml_cfg['meta_batch_size']} tasks × {maml_cfg['episodes_per_task']} episodes, "
        f"{maml_cfg['inner_steps']} inner step at lr {maml_cfg['inner_lr']}. Pretrained and "
        f"oracle: no inner step, meta-batch "
        f"{runs['pretrained']['config']['maml']['meta_batch_size']} tasks × "
        f"{maml_cfg['episodes_per_task']} episodes, i.e. the same env steps per iteration. "
        f"Random init: the runs' untrained initial weights. Wall time of the training loop "
        f"(Ray start-up excluded; shared 2-core machine).",
        "",
        "| method | iterations | env steps | wall time (s) | s / iteration (mean, median, min) "
        "| env steps / s | train return at last iteration (before → after inner step) "
        "| load 1/5/15 min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method in TRAINED:
        run = runs[method]
        last = run["train_returns_last"]
        trained = " → ".join(f"{last[k]:.2f}" for k in sorted(last))
        lines.append(
            f"| {method} | {run['iterations']} | {run['env_steps']:,} | "
            f"{run['train_loop_s']:.0f} | {_times(run)} | "
            f"{run['env_steps_per_s']:,.0f} | {trained} | {_load(run)} |"
        )
    reused = [m for m in TRAINED if runs[m].get("train_wall_s") is None]
    if reused:
        lines += ["", f"Reused finished runs ({', '.join(reused)}; `--reuse`): trained by an "
                  f"earlier invocation with the same config, which stopped before writing its "
                  f"tables; the training columns come from those runs' metrics.jsonl."]
    lines += ["", *_peer_lines(result)]
    gap = result["random_init_gap_maml_vs_pretrained"]
    lines += [
        "",
        f"Check: the random-init rows of the MAML and pretrained evaluations (same initial "
        f"weights, same tasks) differ by at most {gap:.2g}.",
        "",
    ]
    return "\n".join(lines)


def _times(run: dict[str, Any]) -> str:
    if "median_iteration_s" not in run:
        return f"{run['s_per_iteration']:.2f}"
    return (f"{run['s_per_iteration']:.2f}, {run['median_iteration_s']:.2f}, "
            f"{run['min_iteration_s']:.2f}")


def _load(run: dict[str, Any]) -> str:
    load = run.get("load_avg_after_training")
    return "not recorded" if load is None else " / ".join(f"{x:.1f}" for x in load)


def _peer_lines(result: dict[str, Any]) -> list[str]:
    peer, maml = result["peer"], result["runs"]["maml"]
    if not peer:
        return ["No peer numbers for this env in docs/references.md."]
    policy = maml["config"]["policy"]
    ours = "x".join(map(str, policy["hidden_sizes"])) + " " + policy["activation"]
    lines = [
        "## Against the peer (pytorch-maml-rl on this machine kind, docs/references.md)",
        "",
        f"The peer ran its own config, a {peer['policy']} policy; rlmeta here runs the paper's "
        f"{ours}, so time per iteration is not like for like (a larger network costs the "
        f"learner more).",
        "",
        "| measure | pytorch-maml-rl | rlmeta MAML |",
        "| --- | --- | --- |",
        f"| s per meta-iteration (rlmeta: mean, median, min) | {peer['s_per_iteration']} | "
        f"{_times(maml)} |",
        f"| env steps / s end to end | {peer['env_steps_per_s']:,} | "
        f"{maml['env_steps_per_s']:,.0f} |",
    ]
    if "train_return_step_0" in peer:
        last = maml["train_returns_last"]
        curve = result["curves"]["maml"]
        lines += [
            f"| training return before / after 1 step | {peer['train_return_step_0']} / "
            f"{peer['train_return_step_1']} (iteration {peer['train_iteration']}) | "
            f"{last['return/step_0']:.1f} / {last['return/step_1']:.1f} (iteration "
            f"{maml['iterations'] - 1}) |",
            f"| held-out return before / after 1 step | {peer['heldout_return_step_0']} / "
            f"{peer['heldout_return_step_1']} ({peer['heldout_tasks']} tasks) | "
            f"{curve[0]['mean']:.1f} / {curve[1]['mean']:.1f} ({result['eval_tasks']} tasks) |",
        ]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="navigation2d",
                        help=f"comma-separated, from {', '.join(ENVS)}")
    parser.add_argument("--iterations", type=int, default=None,
                        help="meta-iterations per trained method (default: the config's)")
    parser.add_argument("--eval-tasks", type=int, default=40, help="held-out evaluation tasks")
    parser.add_argument("--workers", type=int, default=2, help="Ray rollout workers (0: local)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 iterations, meta-batch 4 × 4 episodes")
    parser.add_argument("--policy", default=None, metavar="SIZESxACT",
                        help="policy for every method, e.g. 64x64-tanh (default: the config's)")
    parser.add_argument("--tag", default="",
                        help="suffix of the result files: maml_<env>_<tag>.md")
    parser.add_argument("--out", default=None,
                        help="results folder (default benchmarks/results; --quick: /tmp)")
    parser.add_argument("--from-json", default=None,
                        help="only re-render the .md of an earlier run's .json (no training)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep finished runs of the same config in --run-root; evaluate only")
    parser.add_argument("--run-root", default="/tmp/rlmeta_maml_bench",
                        help="where the training runs go (each method's folder is replaced)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.envs.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENVS]
    if unknown or not names:
        parser.error(f"--envs {args.envs!r}: expected names from {', '.join(ENVS)}")
    args.env_names = names
    if args.policy is not None:
        sizes, _, activation = args.policy.partition("-")
        try:
            hidden = [int(n) for n in sizes.split("x")]
        except ValueError:
            hidden = []
        if not hidden or not activation:
            parser.error(f"--policy {args.policy!r}: expected sizes-activation, e.g. 64x64-tanh")
        args.policy = {"hidden_sizes": hidden, "activation": activation}
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if args.eval_tasks < 2:
        parser.error(f"--eval-tasks must be >= 2 for a confidence interval, got {args.eval_tasks}")
    if args.out is None:
        args.out = "/tmp/rlmeta_maml_bench/results" if args.quick else str(
            ROOT / "benchmarks" / "results")
    return args


def main(argv: list[str] | None = None) -> int:
    # One torch thread per process, as the peer was measured (more only oversubscribes 2 cores).
    torch.set_num_threads(1)
    args = parse_args(argv)
    command = "python -m benchmarks.maml_tables " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    if args.from_json:
        source = Path(args.from_json)
        result = json.loads(source.read_text())
        result["peer"] = ENVS[result["env"]].peer  # reference numbers may have been annotated
        for run in result["runs"].values():
            metrics = Path(run["run_dir"]) / METRICS_FILE
            rows = read_metrics(metrics) if metrics.exists() else []
            # Only the run this JSON describes (the folder is replaced by every new run).
            if "median_iteration_s" not in run and len(rows) == run["iterations"]:
                run.update(iteration_times(rows))
        text = format_markdown(result)
        source.write_text(json.dumps(result, indent=1) + "\n")
        source.with_suffix(".md").write_text(text)
        print(text)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for env_name in args.env_names:
        result = run_env(env_name, args, command)
        text = format_markdown(result)
        stem = f"maml_{env_name}" + (f"_{args.tag}" if args.tag else "")
        (out / f"{stem}.md").write_text(text)
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

