"""A scaling model of one sync MAML-TRPO iteration, its costs measured here, checked on a
simulated 3-node cluster (`ray.cluster_utils.Cluster`) with 1 and 2 learners.

    python -m benchmarks.scaling [--iterations 5] [--out DIR]

Sync mode does three things one after another, so an iteration takes
`sampling + update + broadcast`:
- sampling: a MAML task is one worker call (sample, adapt, sample again), so W workers take
  `ceil(tasks / W)` rounds of `steps_per_task × step_s` (`step_s`: seconds per env step of one
  worker stepping `envs_per_worker` envs together);
- update: `ceil(tasks / L) × task_s + collective_s` with L learners (`task_s`: one learner's
  seconds per task; `collective_s`: what the sums across a group add per update, 0 for one);
- broadcast: publishing the weights (`broadcast_s`).
The costs are measured on this machine (one node, 2 workers, `learners` 1 and 2; medians over
iterations 2..N of `rlmeta train`); the model then predicts the cluster runs, where the same
actors sit on three nodes (the head: the learners; two more: a worker each), and 64 workers with
1, 4 and 8 GPU learners (the GPU speed-up per task, `--gpu-speedup`, is an estimate, not a
measurement). Writes `scaling.json` and `scaling.md` to `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import ray
import torch
from ray.cluster_utils import Cluster

from rlmeta.config import ExperimentConfig
from rlmeta.config_io import load_config
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run.train import train

EXPERIMENT = "experiments/maml_navigation2d.yaml"
OVERRIDES = ("policy.hidden_sizes=[64, 64]", "policy.activation=tanh", "device=cpu",
             "workers=2", "envs_per_worker=10", "learner_cpus=1")
KEYS = ("iteration_s", "runtime/sampling_s", "runtime/learner_s", "runtime/broadcast_s",
        "runtime/env_steps")


def measure(config: ExperimentConfig) -> dict[str, float]:
    """Medians of the iteration's parts over iterations 2..N of one run."""
    with tempfile.TemporaryDirectory() as run_dir:
        train(config, run_dir)
        rows = read_metrics(Path(run_dir) / METRICS_FILE)[1:]
    return {key: statistics.median(float(row[key]) for row in rows) for key in KEYS}


def costs(config: ExperimentConfig, one: dict[str, float], two: dict[str, float]) -> dict:
    tasks = config.maml.meta_batch_size
    steps_per_task = one["runtime/env_steps"] / tasks
    rounds = math.ceil(tasks / config.workers)
    task_s = one["runtime/learner_s"] / tasks
    return {
        "tasks": tasks,
        "steps_per_task": steps_per_task,
        "step_s": one["runtime/sampling_s"] / (rounds * steps_per_task),
        "task_s": task_s,
        "collective_s": max(0.0, two["runtime/learner_s"] - math.ceil(tasks / 2) * task_s),
        "broadcast_s": one["runtime/broadcast_s"],
    }


def predict(c: dict, workers: int, learners: int, gpu_speedup: float = 1.0) -> dict[str, float]:
    sampling = math.ceil(c["tasks"] / workers) * c["steps_per_task"] * c["step_s"]
    update = (math.ceil(c["tasks"] / learners) * c["task_s"] / gpu_speedup
              + (c["collective_s"] if learners > 1 else 0.0))
    return {"sampling_s": sampling, "update_s": update,
            "iteration_s": sampling + update + c["broadcast_s"]}


def on_cluster(config: ExperimentConfig) -> dict[str, float]:
    """The run on a simulated 3-node cluster: the head holds the learners, two nodes a worker."""
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": config.learners * config.learner_cpus})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, configure_logging=False)
    try:
        return measure(config)
    finally:
        ray.shutdown()
        cluster.shutdown()


def markdown(report: dict) -> str:
    c = report["costs"]
    lines = [
        "# Scaling model of a sync MAML-TRPO Navigation2D iteration (64×64 tanh, 20 tasks × 20 "
        "episodes)", "", f"Command: `{report['command']}`.", "",
        f"Costs measured here: {c['step_s'] * 1e6:.1f} µs per env step of one worker "
        f"({c['steps_per_task']:.0f} steps per task), {c['task_s'] * 1e3:.0f} ms of update per "
        f"task per learner, {c['collective_s']:.2f} s of collectives per update with 2 learners, "
        f"{c['broadcast_s'] * 1e3:.0f} ms broadcast.", "",
        "| run | predicted s / iteration | measured s / iteration |", "| --- | --- | --- |",
    ]
    for row in report["checks"]:
        lines.append(f"| {row['run']} | {row['predicted']:.2f} | {row['measured']:.2f} |")
    lines += ["", f"Predicted, 64 workers (GPU speed-up per task {report['gpu_speedup']}×, "
              "an estimate):", "", "| learners | sampling s | update s | iteration s |",
              "| --- | --- | --- | --- |"]
    for row in report["predictions"]:
        lines.append(f"| {row['learners']} GPU | {row['sampling_s']:.2f} | "
                     f"{row['update_s']:.2f} | {row['iteration_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="per run (median of 2..N)")
    parser.add_argument("--gpu-speedup", type=float, default=2.0,
                        help="assumed update speed-up per task on a GPU (an estimate)")
    parser.add_argument("--out", default="benchmarks/results", help="output directory")
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error(f"--iterations must be >= 2, got {args.iterations}")
    torch.set_num_threads(1)
    base = [*OVERRIDES, f"iterations={args.iterations}", f"checkpoint_every={args.iterations}"]
    configs = {learners: load_config(EXPERIMENT, [*base, f"learners={learners}"])
               for learners in (1, 2)}
    local = {learners: measure(config) for learners, config in configs.items()}
    model = costs(configs[1], local[1], local[2])
    checks = []
    for learners, config in configs.items():
        measured = on_cluster(config)
        checks.append({"run": f"3-node cluster, 2 workers, learners: {learners}",
                       "predicted": predict(model, 2, learners)["iteration_s"],
                       "measured": measured["iteration_s"], "parts": measured})
    predictions = [{"learners": learners,
                    **predict(model, 64, learners, args.gpu_speedup)} for learners in (1, 4, 8)]
    command = "python -m benchmarks.scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command.strip(), "local": {str(k): v for k, v in local.items()},
              "costs": model, "checks": checks, "gpu_speedup": args.gpu_speedup,
              "predictions": predictions}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "scaling.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
