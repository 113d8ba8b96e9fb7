"""benchmarks/sampler.py: runs whose host changed speed are flagged and kept out of the median;
a training iteration's split is read from an `rlmeta train` run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import sampler
from rlmeta.config_io import load_config
from rlmeta.run.train import train

ROOT = Path(__file__).resolve().parents[1]


def row(run: int, ratio: float, before: float, after: float) -> dict:
    result = {
        "env_id": sampler.ENV_ID, "workers": 2, "envs_per_worker": 10, "run": run,
        "steps_per_s": 30000.0, "raw_steps_per_s": (before + after) / 2,
        "raw_before_after": [before, after], "ratio": ratio, "broadcast_s": 0.005,
    }
    result["stable"] = sampler.raw_drift(result) <= sampler.MAX_RAW_DRIFT
    return result


def test_raw_drift_is_relative_to_the_slower_rate() -> None:
    assert sampler.raw_drift(row(1, 0.8, 18000.0, 19800.0)) == 0.1
    assert sampler.raw_drift(row(1, 0.8, 19800.0, 18000.0)) == 0.1
    assert row(1, 0.8, 18000.0, 19000.0)["stable"]
    assert not row(2, 0.97, 12224.7, 19260.8)["stable"]


def test_summary_and_table_leave_unstable_runs_out_of_the_median() -> None:
    rows = [row(1, 0.79, 19000.0, 19400.0), row(2, 0.97, 12224.7, 19260.8),
            row(3, 0.81, 19500.0, 19100.0), row(4, 0.80, 19000.0, 19300.0)]
    summary = sampler.ratio_summary([r["ratio"] for r in rows if r["stable"]])
    assert summary == {"median": 0.8, "min": 0.79, "max": 0.81, "runs": 3}
    assert sampler.ratio_summary([])["median"] is None
    report = {
        "machine": "x86_64, 2 CPUs", "load_before": [0.1, 0.1, 0.1], "load_after": [2.0, 1, 1],
        "repeats": 3, "steps": 1000, "sampler": rows, "ratio_summary": {2: summary},
        "in_process": {"tasks": 400, "bare_cpu_us_per_step": 41.6,
                       "sampler_cpu_us_per_step": 43.6, "ratio": 0.957},
        "maml_iteration": {
            "env_id": sampler.ENV_ID, "workers": 2, "envs_per_worker": 10, "meta_batch_size": 4,
            "episodes_per_task": 10, "iteration": 1, "iteration_s": 1.5, "sampling_s": 0.6,
            "waiting_s": 0.6, "learner_s": 0.9, "broadcast_s": 0.007, "env_steps": 16000.0,
            "command": "rlmeta train experiments/maml_halfcheetah_vel.yaml --set iterations=2",
        },
    }
    text = sampler.markdown(report)
    assert "| 0.97 (unstable) |" in text and "| 0.79 |" in text
    assert "median ratio **0.8** over 3 stable runs" in text
    assert "the sampler 43.6 µs CPU per env step, a bare loop" in text
    assert ("`rlmeta train experiments/maml_halfcheetah_vel.yaml --set iterations=2`, "
            "iteration 2): 1.5 s total; sampling 0.6 s") in text


def test_the_iteration_split_is_the_last_iteration_of_an_rlmeta_train_run(tmp_path: Path) -> None:
    path, overrides = sampler.ITERATION_RUN
    # The benchmark's own run, at a size that trains in seconds and in this process.
    small = ["maml.meta_batch_size=2", "maml.episodes_per_task=2", "workers=0",
             "envs_per_worker=2", "env_kwargs.horizon=20"]
    config = load_config(ROOT / path, [*overrides, *small])
    assert config.iterations == 2 and config.algorithm == "maml"
    train(config, tmp_path)
    split = sampler.iteration_split(tmp_path)
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert split["iteration"] == 1 and split["iteration_s"] == round(last["iteration_s"], 3)
    assert split["sampling_s"] == round(last["runtime/sampling_s"], 4) > 0
    assert split["learner_s"] == round(last["runtime/learner_s"], 4) > 0
    # Pre- and post-adaptation episodes of each task: 2 tasks x 2 episodes x 20 steps x 2.
    assert split["env_steps"] == 160
    assert (split["workers"], split["meta_batch_size"], split["episodes_per_task"]) == (0, 2, 2)


def test_in_process_benchmark_times_both_loops_on_the_same_tasks() -> None:
    from rlmeta.distributed.benchmark import in_process_benchmark

    result = in_process_benchmark("rlmeta/Navigation2D-v0", envs_per_worker=2, tasks=5, blocks=2)
    assert result["tasks"] == 4  # whole blocks only
    assert result["bare_cpu_us_per_step"] > 0 and result["sampler_cpu_us_per_step"] > 0
    assert len(result["ratio_per_block"]) == 2
    low, high = sorted(result["ratio_per_block"])
    assert low <= result["ratio"] <= high


def test_in_process_benchmark_passes_env_kwargs_to_the_env() -> None:
    import pytest

    from rlmeta.distributed.benchmark import in_process_benchmark

    result = in_process_benchmark("rlmeta/Navigation2D-v0", envs_per_worker=2, tasks=2, blocks=1,
                                  env_kwargs={"horizon": 5})
    assert result["env_kwargs"] == {"horizon": 5}
    with pytest.raises(ValueError, match="rejected its kwargs .*no_such_setting"):
        in_process_benchmark("rlmeta/Navigation2D-v0", envs_per_worker=2, tasks=2, blocks=1,
                             env_kwargs={"no_such_setting": 1})


def test_in_process_benchmark_names_bad_sizes() -> None:
    import pytest

    from rlmeta.distributed.benchmark import in_process_benchmark

    with pytest.raises(ValueError, match="tasks >= blocks"):
        in_process_benchmark("rlmeta/Navigation2D-v0", envs_per_worker=2, tasks=1, blocks=2)
    with pytest.raises(ValueError, match="warmup_tasks >= 0, got 2, 2, 2, -1"):
        in_process_benchmark("rlmeta/Navigation2D-v0", envs_per_worker=2, tasks=2, blocks=2,
                             warmup_tasks=-1)


def test_warmup_tasks_of_a_metaworld_split_meet_every_class() -> None:
    # One warm-up task per class builds every env's MuJoCo model of each class before timing.
    from rlmeta.distributed.benchmark import _warmup_specs

    specs = _warmup_specs("rlmeta/MetaWorld-v0", 10, 0, {"benchmark": "ML10"})
    assert len({spec.task["env_name"] for spec in specs}) == 10


def test_the_metaworld_page_gives_both_ratios_and_its_command() -> None:
    from benchmarks import sampler_metaworld

    rows = [{"env_id": sampler_metaworld.ENV_ID, "workers": 1, "envs_per_worker": 10, "run": 1,
             "steps_per_s": 1800.0, "raw_steps_per_s": 1900.0,
             "raw_before_after": [1890.0, 1910.0], "ratio": 0.947, "stable": True}]
    report = {
        "machine": "x86_64, 2 CPUs", "load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.1, 0.1],
        "steps": 20000, "repeats": 1, "in_process_tasks": 40, "blocks": 4, "sampler": rows,
        "ratio_summary": {1: sampler.ratio_summary([0.947])},
        "in_process": {"tasks": 40, "bare_cpu_us_per_step": 520.0,
                       "sampler_cpu_us_per_step": 521.0, "ratio": 0.998,
                       "ratio_per_block": [0.99, 1.0]},
    }
    text = sampler_metaworld.markdown(report)
    assert "ratio **0.998**" in text and "median ratio **0.947**" in text
    assert "`python -m benchmarks.sampler_metaworld --steps 20000 --repeats 1`" in text
