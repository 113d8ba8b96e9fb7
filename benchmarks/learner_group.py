"""Seconds per update with a learner group of 1 and 2 learners (`learners`), on one meta-batch.

    python -m benchmarks.learner_group [--cases nav64,nav100,cheetah,rl2mdp] [--repeats 3]
        [--end-to-end N] [--out DIR]

For each case one meta-batch is sampled once in this process (the experiment file's settings,
seed 0), then `RayRuntime.learn` is timed on it with `learners: 1` and `learners: 2` (one CPU and
one torch thread each, gloo), the two alternating over `--repeats` rounds: the driver's seconds,
so shipping the meta-batch to the learners and publishing the weights are included, and the CPU
seconds of the busiest learner (what the update costs it however loaded the host is). The MAML cases
use the experiment file's TRPO metric (the default, `maml.fisher: adapted` on every 10th step);
`--set maml.fisher=exact` times the exact one (`--set` applies to every case, as in `rlmeta
train`), and `benchmarks.learner` times the metrics against each other. `rl2mdp` is one RL²
update of `experiments/rl2_tabular_mdp_n10_cluster.yaml` at a tenth of its batch (120 tasks × 2
trials).

`--end-to-end N` also trains each case for N iterations through `rlmeta train` with 2 rollout
workers and each learner count, and reports the median seconds per iteration over iterations
2..N. Writes `learner_group.json` and `learner_group.md` to `--out` (default
`benchmarks/results`).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import torch

from benchmarks.learner import sample_meta_batch
from benchmarks.timing_cli import parse_timing_args, write_report
from rlmeta.config import ExperimentConfig, with_changes
from rlmeta.config_io import load_config
from rlmeta.distributed.ray_runtime import RayRuntime
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run import build
from rlmeta.run.train import train

LEARNERS = (1, 2)


@dataclass(frozen=True)
class Case:
    name: str
    experiment: str
    overrides: tuple[str, ...]
    description: str


CASES = {
    "nav64": Case("nav64", "experiments/maml_navigation2d.yaml",
                  ("policy.hidden_sizes=[64, 64]", "policy.activation=tanh"),
                  "MAML-TRPO Navigation2D, 20 tasks × 20 episodes, 64×64 tanh"),
    "nav100": Case("nav100", "experiments/maml_navigation2d.yaml", (),
                   "MAML-TRPO Navigation2D, 20 tasks × 20 episodes, 100×100 ReLU"),
    "cheetah": Case("cheetah", "experiments/maml_halfcheetah_vel.yaml", (),
                    "MAML-TRPO HalfCheetahVel, 40 tasks × 20 episodes × horizon 200"),
    "rl2mdp": Case("rl2mdp", "experiments/rl2_tabular_mdp_n10_cluster.yaml",
                   ("rl2.meta_batch_size=120", "device=cpu"),
                   "RL² tabular MDP n=10 (cluster recipe), 120 tasks × 2 trials"),
}


def case_config(case: Case, *extra: str) -> ExperimentConfig:
    return load_config(case.experiment, [*case.overrides, "device=cpu", "learner_cpus=1", *extra])


def cpu_seconds(runtime: RayRuntime) -> list[float]:
    """CPU seconds each learner process has used so far: what an update costs a learner
    whatever else the host runs (wall time on a loaded host measures the load)."""
    return ray.get([learner.__ray_call__.remote(lambda _: time.process_time())
                    for learner in runtime.learners.actors])


def time_updates(case: Case, repeats: int) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Driver seconds of `learn` on one meta-batch, and the most CPU seconds any one learner
    spent on it, per learner count."""
    config = case_config(case)
    results = sample_meta_batch(config)
    seconds: dict[int, list[float]] = {learners: [] for learners in LEARNERS}
    cpu: dict[int, list[float]] = {learners: [] for learners in LEARNERS}
    for _ in range(repeats):
        for learners in LEARNERS:
            runtime = build.make_runtime(with_changes(config, workers=1, learners=learners))
            try:
                ray.get([worker.ready.remote() for worker in runtime.workers])
                runtime.learn(results)  # the first update pays for imports and allocation
                cpu_before = cpu_seconds(runtime)
                began = time.perf_counter()
                runtime.learn(results)
                seconds[learners].append(time.perf_counter() - began)
                cpu[learners].append(max(after - before for before, after in zip(
                    cpu_before, cpu_seconds(runtime), strict=True)))
            finally:
                runtime.shutdown()
    return seconds, cpu


def time_iterations(case: Case, iterations: int) -> dict[int, float]:
    """Median seconds per iteration over iterations 2..N of `rlmeta train` with 2 workers."""
    medians = {}
    for learners in LEARNERS:
        config = case_config(case, f"iterations={iterations}", f"checkpoint_every={iterations}",
                             "workers=2", f"learners={learners}")
        with tempfile.TemporaryDirectory() as run_dir:
            train(config, run_dir)
            rows = read_metrics(Path(run_dir) / METRICS_FILE)
        medians[learners] = statistics.median(row["iteration_s"] for row in rows[1:])
    return medians


def markdown(report: dict) -> str:
    lines = [
        "# Learner group: seconds per update with 1 and 2 learners",
        "",
        f"Command: `{report['command']}`. One CPU and one torch thread per learner, gloo; "
        f"median of {report['repeats']} updates on one meta-batch (driver seconds: the batch "
        "shipped, update, weights published).",
        "",
        "| case | learners: 1 s | learners: 2 s | speed-up | CPU s per learner, 1 | "
        "CPU s per learner, 2 | CPU ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in report["cases"]:
        one, two = case["update_s_median"]["1"], case["update_s_median"]["2"]
        cpu_one, cpu_two = case["cpu_s_median"]["1"], case["cpu_s_median"]["2"]
        lines.append(f"| {case['description']} | {one:.2f} | {two:.2f} | {one / two:.2f}× | "
                     f"{cpu_one:.2f} | {cpu_two:.2f} | {cpu_one / cpu_two:.2f}× |")
    if any("iteration_s_median" in case for case in report["cases"]):
        lines += ["", "End to end, 2 rollout workers (the file's envs per worker), median s per "
                  "iteration over "
                  "iterations 2..N:", "", "| case | learners: 1 | learners: 2 |",
                  "| --- | --- | --- |"]
        for case in report["cases"]:
            if "iteration_s_median" in case:
                medians = case["iteration_s_median"]
                lines.append(f"| {case['description']} | {medians['1']:.2f} | "
                             f"{medians['2']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_timing_args(argv, "benchmarks.learner_group", __doc__.splitlines()[0], CASES,
                             "nav64,nav100,cheetah,rl2mdp", "learner count")
    torch.set_num_threads(1)
    report = {"command": args.command, "repeats": args.repeats, "overrides": args.overrides,
              "cases": []}
    for name in args.cases.split(","):
        case = replace(CASES[name], overrides=(*CASES[name].overrides, *args.overrides))
        seconds, cpu = time_updates(case, args.repeats)
        entry = {"case": name, "description": case.description,
                 "update_s": {str(k): v for k, v in seconds.items()},
                 "update_s_median": {str(k): statistics.median(v) for k, v in seconds.items()},
                 "cpu_s": {str(k): v for k, v in cpu.items()},
                 "cpu_s_median": {str(k): statistics.median(v) for k, v in cpu.items()}}
        if args.end_to_end:
            entry["iteration_s_median"] = {
                str(k): v for k, v in time_iterations(case, args.end_to_end).items()}
        report["cases"].append(entry)
        print(json.dumps(entry), flush=True)
    write_report(args.out, "learner_group", report, markdown(report))


if __name__ == "__main__":
    main()
