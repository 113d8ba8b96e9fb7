"""Sampler benchmark on Meta-World ML10: rlmeta's sampler beside a bare loop over the same envs.

    python -m benchmarks.sampler_metaworld [--steps 100000] [--repeats 3] [--out benchmarks/results]

The machinery of `benchmarks.sampler` on `rlmeta/MetaWorld-v0` with `{benchmark: ML10}`, 10 envs
per worker (the MAML files' 10 episodes per task), horizon 500. Writes DIR/sampler_metaworld.json
(all numbers) and DIR/sampler_metaworld.md (a table):

- without Ray, in one process: CPU µs per env step of a worker's sampling path and of a bare
  `for` loop stepping the same Meta-World envs with one batched policy forward per step
  (`rlmeta bench sampler-in-process`); `ratio` = bare / sampler;
- through Ray workers (`rlmeta bench sampler`), 1 and 2 workers: env steps per second against
  the bare loop's rate in this process (per worker), repeated until `--repeats` runs are stable.

Target: ratio >= 0.9 of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import ray

from benchmarks.sampler import MAX_RAW_DRIFT, record_sampler_runs, write_sampler_report
from rlmeta.distributed.benchmark import in_process_benchmark
from rlmeta.distributed.ray_runtime import start_local_ray

ENV_ID = "rlmeta/MetaWorld-v0"
ENV_KWARGS = {"benchmark": "ML10"}
ENVS_PER_WORKER = 10
# One untimed task per ML10 train class first (tasks are drawn evenly across classes): each env
# builds a MuJoCo model per class it meets (0.1-0.5 s), which would otherwise land in whichever
# timed loop meets the class first.
WARMUP_TASKS = 10
TARGET = 0.9
DEFAULTS = {"steps": 100_000, "repeats": 3, "in_process_tasks": 40, "blocks": 4}


def command(report: dict[str, Any]) -> str:
    """The command line that reproduces `report` (defaults left out)."""
    options = [f"--{key.replace('_', '-')} {report[key]}"
               for key in DEFAULTS if report[key] != DEFAULTS[key]]
    return " ".join(["python -m benchmarks.sampler_metaworld", *options])


def markdown(report: dict[str, Any]) -> str:
    busy = report["load_before"][0] > (os.cpu_count() or 1)
    alone = report["in_process"]
    lines = [
        "# Sampler benchmark on Meta-World ML10",
        "",
        f"Machine: {report['machine']}; load average {report['load_before']} before, "
        f"{report['load_after']} after"
        + (". **Provisional**: other jobs were sharing the CPU cores." if busy
           else " (no other job was running)."),
        "",
        f"`{ENV_ID}` with `{ENV_KWARGS}` (its 10 train classes, horizon 500), "
        f"{ENVS_PER_WORKER} envs per worker, the default MLP policy (one batched forward per "
        f"step). Before timing, each loop and each worker runs one task of each of the "
        f"{WARMUP_TASKS} classes, so every env has built its MuJoCo model per class. Target: "
        f"ratio >= {TARGET} of the bare loop.",
        "",
        f"Without Ray, in one process ({alone['tasks']} tasks each, alternating task by task): "
        f"the sampler {alone['sampler_cpu_us_per_step']} µs CPU per env step, a bare `for` loop "
        f"over the same envs and policy {alone['bare_cpu_us_per_step']} µs: ratio "
        f"**{alone['ratio']}** (per block: {alone['ratio_per_block']}).",
        "",
        "Through Ray workers (`rlmeta bench sampler`): the raw rate is the bare loop's in this "
        "process, the mean of a run before and one after each Ray run; a run whose two raw "
        f"rates differ by more than {MAX_RAW_DRIFT:.0%} is marked unstable and left out of the "
        "median.",
        "",
        "| workers × envs | run | steps/s (Ray) | raw steps/s (before, after) | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["sampler"]:
        before, after = row["raw_before_after"]
        ratio = row["ratio"] if row["stable"] else f"{row['ratio']} (unstable)"
        lines.append(
            f"| {row['workers']} × {row['envs_per_worker']} | {row['run']} | "
            f"{row['steps_per_s']} | {row['raw_steps_per_s']} ({before}, {after}) | {ratio} |"
        )
    lines.append("")
    for workers, summary in report["ratio_summary"].items():
        lines.append(
            f"- {workers} × {ENVS_PER_WORKER}: median ratio **{summary['median']}** over "
            f"{summary['runs']} stable runs (min {summary['min']}, max {summary['max']})"
        )
    lines += [
        "",
        f"Command: `{command(report)}` (`make bench` runs it). With 2 workers on a 2-core host "
        "the ratio is bounded by the cores the driver and other processes leave. Ray runs its "
        "workers at niceness 15 and the bare loop runs at 0, so on a host shared with other "
        "jobs the Ray rate loses for reasons outside rlmeta; the in-process ratio (CPU time, "
        "both loops alternating in one process) is the sampler's own cost.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                        help="env steps through the Ray workers per run")
    parser.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                        help="stable runs per worker count; the summary gives their median")
    parser.add_argument("--in-process-tasks", type=int, default=DEFAULTS["in_process_tasks"],
                        help="tasks per loop of the in-process measurement")
    parser.add_argument("--blocks", type=int, default=DEFAULTS["blocks"],
                        help="blocks of the in-process measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        metavar="DIR", help="directory for sampler_metaworld.{json,md}")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "env_id": ENV_ID,
        "env_kwargs": ENV_KWARGS,
        "steps": args.steps,
        "repeats": args.repeats,
        "in_process_tasks": args.in_process_tasks,
        "blocks": args.blocks,
        "sampler": [],
        "ratio_summary": {},
    }
    report["in_process"] = in_process_benchmark(ENV_ID, ENVS_PER_WORKER, args.in_process_tasks,
                                                args.blocks, env_kwargs=ENV_KWARGS,
                                                warmup_tasks=WARMUP_TASKS)
    print(json.dumps(report["in_process"]), flush=True)
    start_local_ray(3)  # 2 workers and the learner, as benchmarks.sampler starts it
    try:
        record_sampler_runs(report, (1, 2), args.steps, args.repeats, env_id=ENV_ID,
                            env_kwargs=ENV_KWARGS, envs_per_worker=ENVS_PER_WORKER,
                            warmup_tasks=WARMUP_TASKS)
    finally:
        ray.shutdown()
    write_sampler_report(report, args.out, "sampler_metaworld", markdown)


if __name__ == "__main__":
    main()
