"""Sampler benchmark: Ray workers versus one plain process, weights broadcast, MAML iteration split.

    .venv/bin/python benchmarks/sampler.py [--steps 40000] [--repeats 3] [--out benchmarks/results]

Writes sampler.json (all numbers) and sampler.md (a table). Target: ratio >= 0.8 with
2 workers x 10 envs on rlmeta/HalfCheetahVel-v0. The load average at the start and end is
recorded, because numbers taken on a shared machine are only indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from rlmeta.config import ExperimentConfig
from rlmeta.distributed.benchmark import sampler_benchmark
from rlmeta.distributed.ray_runtime import RayRuntime, start_local_ray
from rlmeta.maml.config import MAMLConfig
from rlmeta.run import build
from rlmeta.run.train import draw_task_specs

ENV_ID = "rlmeta/HalfCheetahVel-v0"
# A run whose plain-process rate before and after the Ray run differ by more than this saw the
# host change speed under it (this VM's rate moves by up to 40% within a minute), so its ratio
# says nothing about Ray; it is reported, left out of the median and measured again (at most
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


def maml_iteration_timings(workers: int, envs_per_worker: int, iterations: int = 2) -> dict:
    """Seconds per MAML-TRPO iteration split into sampling, learner and waiting (last iteration;
    the first one includes actor start-up)."""
    config = ExperimentConfig(
        algorithm="maml", env=ENV_ID, workers=workers, envs_per_worker=envs_per_worker,
        device="cpu", maml=MAMLConfig(meta_batch_size=4, episodes_per_task=envs_per_worker),
    )
    env = build.build_env(config)
    factory = build.algorithm_factory(config, env.observation_space, env.action_space)
    runtime = RayRuntime(config, factory, build.env_factory(config))
    rng = np.random.default_rng(0)
    try:
        for _ in range(iterations):
            runtime.timings()
            start = time.perf_counter()
            handle = runtime.submit(draw_task_specs(env, config.maml.meta_batch_size, rng))
            runtime.learn(runtime.collect(handle))
            total = time.perf_counter() - start
            timings = runtime.timings()
    finally:
        runtime.shutdown()
    return {
        "workers": workers,
        "envs_per_worker": envs_per_worker,
        "meta_batch_size": config.maml.meta_batch_size,
        "episodes_per_task": config.maml.episodes_per_task,
        "iteration_s": round(total, 3),
        **{key: round(value, 4) for key, value in timings.items()},
    }


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
            f"- {workers} × 10: median ratio **{summary['median']}** over {summary['runs']} "
            f"stable runs (min {summary['min']}, max {summary['max']})"
        )
    maml = report["maml_iteration"]
    lines += [
        "",
        f"MAML-TRPO iteration on {ENV_ID} ({maml['workers']} workers × {maml['envs_per_worker']} "
        f"envs, {maml['meta_batch_size']} tasks × {maml['episodes_per_task']} episodes, pre- and "
        f"post-adaptation): {maml['iteration_s']} s total; sampling {maml['sampling_s']} s, "
        f"driver waiting {maml['waiting_s']} s, learner {maml['learner_s']} s, "
        f"weights put {maml['broadcast_s']} s, {int(maml['env_steps'])} env steps.",
        "",
        f"Command: `.venv/bin/python benchmarks/sampler.py --steps {report['steps']} "
        f"--repeats {report['repeats']}` (`make bench` runs it). Where the time goes, and what "
        "was tried: `sampler_notes.md`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements per configuration; the summary gives their median")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "steps": args.steps,
        "sampler": [],
        "ratio_summary": {},
    }
    # The runtime's own local start-up (its system settings included); 3 CPUs: 2 workers and
    # the learner.
    start_local_ray(3)
    try:
        for workers in (2, 1):
            ratios: list[float] = []
            run = 0
            while len(ratios) < args.repeats and run < 2 * args.repeats:
                run += 1
                row = {**sampler_benchmark(ENV_ID, workers, 10, args.steps), "run": run}
                row["stable"] = raw_drift(row) <= MAX_RAW_DRIFT
                print(json.dumps(row))
                report["sampler"].append(row)
                if row["stable"]:
                    ratios.append(row["ratio"])
            report["ratio_summary"][workers] = ratio_summary(ratios)
        report["maml_iteration"] = maml_iteration_timings(2, 10)
        print(json.dumps(report["maml_iteration"]))
    finally:
        ray.shutdown()
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sampler.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sampler.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
