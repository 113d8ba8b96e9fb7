"""Sampler benchmark: Ray workers against one plain process, and where a training iteration goes.

    python -m benchmarks.sampler [--steps 40000] [--repeats 3] [--out benchmarks/results]

Measures rlmeta's own code three ways and writes DIR/sampler.json (all numbers) and DIR/sampler.md
(a table):

- `rlmeta bench sampler` (`rlmeta.distributed.benchmark.sampler_benchmark`) with 2 and 1 workers
  x 10 envs on rlmeta/HalfCheetahVel-v0, repeated until `--repeats` runs are stable. Target:
  ratio >= 0.8 with 2 workers.
- `rlmeta bench sampler-in-process`: what the sampler costs per env step without Ray.
- A short `rlmeta train` run of MAML-TRPO (`ITERATION_RUN`): its last iteration split into
  sampling, driver waiting, learner and weights broadcast, as its metrics log records them
  (`runtime/*`); the first iteration also starts the actors.

The load average at the start and end is recorded, because numbers taken on a shared machine are
only indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray

from rlmeta.config_io import load_config
from rlmeta.distributed.benchmark import in_process_benchmark, sampler_benchmark
from rlmeta.distributed.ray_runtime import start_local_ray
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run.train import CONFIG_FILE, train

ENV_ID = "rlmeta/HalfCheetahVel-v0"
ENVS_PER_WORKER = 10
IN_PROCESS_TASKS = 400  # tasks per loop of the in-process measurement (`rlmeta bench`'s default)
# The experiment file and overrides of the run whose iteration is split: two iterations of the
# shipped MAML config at 4 tasks x 10 episodes, on 2 workers x 10 envs.
ITERATION_RUN = (
    "experiments/maml_halfcheetah_vel.yaml",
    ["iterations=2", "maml.meta_batch_size=4", "maml.episodes_per_task=10", "workers=2",
     f"envs_per_worker={ENVS_PER_WORKER}", "device=cpu", "checkpoint_every=2"],
)
# A run whose plain-process rate before and after the Ray run differ by more than this saw the host
# change speed under it (a shared VM's rate can move by tens of percent within a minute), so its
# ratio says nothing about Ray; it is reported, left out of the median and measured again (at most
# `repeats` extra runs).
MAX_RAW_DRIFT = 0.10


def raw_drift(row: dict[str, Any]) -> float:
    """Relative difference of the two plain-process rates around one Ray run."""
    before, after = row["raw_before_after"]
    return abs(before - after) / min(before, after)


def ratio_summary(stable_ratios: list[float]) -> dict[str, Any]:
    """Median, min and max of the stable runs' ratios (None when no run was stable)."""
    if not stable_ratios:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {
        "median": round(float(np.median(stable_ratios)), 3),
        "min": min(stable_ratios),
        "max": max(stable_ratios),
        "runs": len(stable_ratios),
    }


def sampler_runs(workers: int, steps: int, repeats: int, env_id: str = ENV_ID,
                 env_kwargs: dict[str, Any] | None = None, envs_per_worker: int = ENVS_PER_WORKER,
                 warmup_tasks: int = 1) -> tuple[list[dict], dict[str, Any]]:
    """`sampler_benchmark` until `repeats` runs are stable (at most `2 * repeats` runs): every
    run, and the summary of the stable runs' ratios."""
    rows, ratios = [], []
    while len(ratios) < repeats and len(rows) < 2 * repeats:
        row = {**sampler_benchmark(env_id, workers, envs_per_worker, steps,
                                   env_kwargs=env_kwargs, warmup_tasks=warmup_tasks),
               "run": len(rows) + 1}
        row["stable"] = raw_drift(row) <= MAX_RAW_DRIFT
        print(json.dumps(row), flush=True)
        rows.append(row)
        if row["stable"]:
            ratios.append(row["ratio"])
    return rows, ratio_summary(ratios)


def record_sampler_runs(report: dict[str, Any], worker_counts: tuple[int, ...], steps: int,
                        repeats: int, **sampler_kwargs: Any) -> None:
    """`sampler_runs` for each worker count (Ray already started), into `report["sampler"]`
    (every run) and `report["ratio_summary"][workers]`."""
    for workers in worker_counts:
        rows, report["ratio_summary"][workers] = sampler_runs(workers, steps, repeats,
                                                              **sampler_kwargs)
        report["sampler"] += rows


def write_sampler_report(report: dict[str, Any], out: Path, stem: str,
                         page: Callable[[dict[str, Any]], str]) -> None:
    """The load after the runs into `report`, then `<out>/<stem>.json` and `<out>/<stem>.md`
    (`page(report)`, which reads that load)."""
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(page(report))


def iteration_split(run_dir: Path) -> dict[str, Any]:
    """The last iteration of an `rlmeta train` run as its metrics log records it: its seconds,
    split by the runtime's timings, with the run's sampling settings."""
    last = read_metrics(run_dir / METRICS_FILE)[-1]
    config = load_config(run_dir / CONFIG_FILE)
    settings = config.maml if config.algorithm == "maml" else config.rl2
    return {
        "algorithm": config.algorithm,
        "env_id": config.env,
        "workers": config.workers,
        "envs_per_worker": config.envs_per_worker,
        "meta_batch_size": settings.meta_batch_size,
        "episodes_per_task": getattr(settings, "episodes_per_task", None),
        "iteration": last["iteration"],
        "iteration_s": round(last["iteration_s"], 3),
        **{key.removeprefix("runtime/"): round(value, 4)
           for key, value in last.items() if key.startswith("runtime/")},
    }


def train_iteration() -> dict[str, Any]:
    """Train `ITERATION_RUN` into a scratch directory and split its last iteration."""
    path, overrides = ITERATION_RUN
    config = load_config(Path(__file__).resolve().parents[1] / path, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        train(config, Path(scratch) / "run")
        split = iteration_split(Path(scratch) / "run")
    command = f"rlmeta train {path} " + " ".join(f"--set {o}" for o in overrides)
    return {**split, "command": command}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Sampler benchmark",
        "",
        f"Machine: {report['machine']}; load average {report['load_before']} before, "
        f"{report['load_after']} after"
        + (
            ". **Provisional**: other jobs were sharing the CPU cores, so the multi-worker ratio "
            "is bounded by the cores left over."
            # The 1-minute load decays slowly after a previous run; above the core count means
            # something else was competing for the CPU.
            if report["load_before"][0] > (os.cpu_count() or 1)
            else " (no other job was running)."
        ),
        "",
        f"Each configuration was measured until {report['repeats']} runs were stable; the raw "
        "rate is the mean of a plain-process run before and one after each Ray run (both "
        f"shown). A run whose two raw rates differ by more than {MAX_RAW_DRIFT:.0%} is marked "
        "unstable (the host changed speed during it) and left out of the median.",
        "",
        "| env | workers × envs | run | steps/s (Ray) | raw steps/s (before, after) | ratio | "
        "broadcast s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["sampler"]:
        before, after = row["raw_before_after"]
        ratio = row["ratio"] if row["stable"] else f"{row['ratio']} (unstable)"
        lines.append(
            f"| {row['env_id']} | {row['workers']} × {row['envs_per_worker']} | {row['run']} | "
            f"{row['steps_per_s']} | {row['raw_steps_per_s']} ({before}, {after}) | "
            f"{ratio} | {row['broadcast_s']} |"
        )
    lines.append("")
    for workers, summary in report["ratio_summary"].items():
        lines.append(
            f"- {workers} × {ENVS_PER_WORKER}: median ratio **{summary['median']}** over "
            f"{summary['runs']} stable runs (min {summary['min']}, max {summary['max']})"
        )
    alone = report["in_process"]
    tasks = alone["tasks"]
    options = "" if tasks == IN_PROCESS_TASKS else f" --in-process-tasks {tasks}"
    split = report["maml_iteration"]
    lines += [
        "",
        f"Without Ray, in one process ({alone['tasks']} tasks each, alternating): the sampler "
        f"{alone['sampler_cpu_us_per_step']} µs CPU per env step, a bare loop over the same envs "
        f"and policy {alone['bare_cpu_us_per_step']} µs (ratio {alone['ratio']}).",
        "",
        f"MAML-TRPO iteration on {split['env_id']} ({split['workers']} workers × "
        f"{split['envs_per_worker']} envs, {split['meta_batch_size']} tasks × "
        f"{split['episodes_per_task']} episodes, pre- and post-adaptation; `{split['command']}`, "
        f"iteration {split['iteration'] + 1}): {split['iteration_s']} s total; sampling "
        f"{split['sampling_s']} s, driver waiting {split['waiting_s']} s, learner "
        f"{split['learner_s']} s, weights put {split['broadcast_s']} s, "
        f"{int(split['env_steps'])} env steps.",
        "",
        f"Command: `python -m benchmarks.sampler --steps {report['steps']} "
        f"--repeats {report['repeats']}{options}` (`make bench` runs it). Where the time goes, "
        "and what was tried: `sampler_notes.md`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40_000,
                        help="env steps through the Ray workers per run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="stable runs per configuration; the summary gives their median")
    parser.add_argument("--in-process-tasks", type=int, default=IN_PROCESS_TASKS,
                        help="tasks per loop of the in-process measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        metavar="DIR", help="directory for sampler.json and sampler.md")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "steps": args.steps,
        "sampler": [],
        "ratio_summary": {},
    }
    report["in_process"] = in_process_benchmark(ENV_ID, ENVS_PER_WORKER, args.in_process_tasks)
    print(json.dumps(report["in_process"]), flush=True)
    # One local Ray for every run (the runtime's own start-up, its system settings included):
    # 2 workers and the learner.
    start_local_ray(3)
    try:
        record_sampler_runs(report, (2, 1), args.steps, args.repeats)
        report["maml_iteration"] = train_iteration()
        print(json.dumps(report["maml_iteration"]), flush=True)
    finally:
        ray.shutdown()
    write_sampler_report(report, args.out, "sampler", markdown)


if __name__ == "__main__":
    main()
