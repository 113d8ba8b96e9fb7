"""What one learner update costs, by TRPO metric (`maml.fisher`), on the same meta-batch.

    python -m benchmarks.learner [--cases nav64,nav100,cheetah] [--repeats 3] [--out DIR]

For each case one meta-batch is sampled once (the experiment file's settings, seed 0, in this
process), then `update` is timed on it for each metric in turn, every variant starting from the
same weights, `--repeats` rounds alternating the variants so a drifting host slows each alike.
`exact` is the metric the learner used before `adapted` (its code path is unchanged), so the
ratio `exact / variant` is the speed-up over it. One torch thread, as a learner with
`learner_cpus: 1`.

`--end-to-end N` also trains each case's variants for N iterations through `rlmeta train` with
2 rollout workers and reports the median seconds per iteration over iterations 2..N.

Writes `learner_fisher.json` and `learner_fisher.md` to `--out` (default `benchmarks/results`).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing_cli import parse_timing_args, write_report
from rlmeta.algorithm import TaskResult
from rlmeta.config import ExperimentConfig, with_changes
from rlmeta.config_io import load_config
from rlmeta.metrics import METRICS_FILE, read_metrics
from rlmeta.run import build
from rlmeta.run.train import draw_task_specs, train


@dataclass(frozen=True)
class Case:
    name: str
    experiment: str
    overrides: tuple[str, ...]
    description: str


CASES = {
    "nav64": Case(
        "nav64", "experiments/maml_navigation2d.yaml",
        ("policy.hidden_sizes=[64, 64]", "policy.activation=tanh"),
        "Navigation2D, 20 tasks × 20 episodes, 64×64 tanh (pytorch-maml-rl's settings)",
    ),
    "nav100": Case(
        "nav100", "experiments/maml_navigation2d.yaml", (),
        "Navigation2D, 20 tasks × 20 episodes, 100×100 ReLU (the paper's)",
    ),
    "cheetah": Case(
        "cheetah", "experiments/maml_halfcheetah_vel.yaml", (),
        "HalfCheetahVel, 40 tasks × 20 episodes × horizon 200, 100×100 ReLU",
    ),
}
VARIANTS = {
    "exact": ("maml.fisher=exact",),
    "adapted": ("maml.fisher=adapted", "maml.fisher_step_stride=1"),
    "adapted, stride 10": ("maml.fisher=adapted", "maml.fisher_step_stride=10"),
}


def sample_meta_batch(config: ExperimentConfig) -> list[TaskResult]:
    """One meta-batch of `config`, sampled in this process as its workers would."""
    runtime = build.make_runtime(with_changes(config, workers=0))
    env = build.build_env(config)
    try:
        batch = build.algorithm_of(config).meta_batch_size(config)
        specs = draw_task_specs(env, batch, np.random.default_rng(0))
        return runtime.collect(runtime.submit(specs))
    finally:
        runtime.shutdown()
        env.close()


def time_updates(case: Case, repeats: int) -> dict[str, list[float]]:
    configs = {name: load_config(case.experiment, [*case.overrides, *extra])
               for name, extra in VARIANTS.items()}
    results = sample_meta_batch(configs["exact"])
    start = build.build_algorithm(configs["exact"], "cpu").get_weights()
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name, config in configs.items():
            algorithm = build.build_algorithm(config, "cpu")
            algorithm.set_weights(start)
            began = time.perf_counter()
            algorithm.update(results)
            seconds[name].append(time.perf_counter() - began)
    return seconds


def time_iterations(case: Case, iterations: int) -> dict[str, float]:
    """Median seconds per iteration over iterations 2..N of a short `rlmeta train` run."""
    medians = {}
    for name, extra in VARIANTS.items():
        config = load_config(case.experiment, [
            *case.overrides, *extra, f"iterations={iterations}", f"checkpoint_every={iterations}",
            "workers=2"])
        with tempfile.TemporaryDirectory() as run_dir:
            train(config, run_dir)
            rows = read_metrics(Path(run_dir) / METRICS_FILE)
        medians[name] = statistics.median(row["iteration_s"] for row in rows[1:])
    return medians


def markdown(report: dict) -> str:
    names = list(VARIANTS)
    lines = [
        "# Learner: seconds per MAML-TRPO update by TRPO metric",
        "",
        f"Command: `{report['command']}`. One torch thread; median of {report['repeats']} "
        "updates on one meta-batch, each from the same weights; ratio = exact / variant.",
        "",
        "| case | " + " | ".join(f"{name} s" for name in names) + " | "
        + " | ".join(f"speed-up, {name}" for name in names[1:]) + " |",
        "| --- |" + " --- |" * (2 * len(names) - 1),
    ]
    for case in report["cases"]:
        medians = case["update_s_median"]
        ratios = [medians["exact"] / medians[name] for name in names[1:]]
        lines.append(
            f"| {case['description']} | " + " | ".join(f"{medians[n]:.2f}" for n in names)
            + " | " + " | ".join(f"{r:.2f}×" for r in ratios) + " |")
    if any("iteration_s_median" in case for case in report["cases"]):
        lines += ["", "End to end, 2 rollout workers × 10 envs, median s per iteration over "
                  "iterations 2..N:", "",
                  "| case | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for case in report["cases"]:
            if "iteration_s_median" in case:
                medians = case["iteration_s_median"]
                lines.append(f"| {case['description']} | "
                             + " | ".join(f"{medians[n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_timing_args(argv, "benchmarks.learner", __doc__.splitlines()[0], CASES,
                             "nav64,nav100,cheetah", "variant")
    torch.set_num_threads(1)
    report = {"command": args.command, "repeats": args.repeats, "overrides": args.overrides,
              "cases": []}
    for name in args.cases.split(","):
        case = replace(CASES[name], overrides=(*CASES[name].overrides, *args.overrides))
        seconds = time_updates(case, args.repeats)
        entry = {"case": name, "description": case.description, "update_s": seconds,
                 "update_s_median": {k: statistics.median(v) for k, v in seconds.items()}}
        if args.end_to_end:
            entry["iteration_s_median"] = time_iterations(case, args.end_to_end)
        report["cases"].append(entry)
        print(json.dumps(entry), flush=True)
    write_report(args.out, "learner_fisher", report, markdown(report))


if __name__ == "__main__":
    main()
