"""Sweeps on Ray Tune: the sweep file checked before anything runs, and a tiny sweep end to end
through `rlmeta sweep` (2 trials of 2 iterations), each trial a normal run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from test_cli import rlmeta

from rlmeta.config import ConfigError
from rlmeta.config_io import load_config
from rlmeta.metrics import read_metrics
from rlmeta.run.sweep import load_sweep, trial_cpus, trial_name

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "experiments/sweeps/maml_navigation2d_inner_lr_max_kl.yaml"
TINY_SET = {
    "iterations": 2, "policy.hidden_sizes": [8, 8], "maml.meta_batch_size": 3,
    "maml.episodes_per_task": 3, "envs_per_worker": 3, "env_kwargs": {"horizon": 20},
}


def write_sweep(tmp_path: Path, **fields) -> Path:
    data = {"experiment": str(REPO / "experiments/maml_navigation2d.yaml"), "set": TINY_SET,
            "grid": {"maml.inner_lr": [0.05, 0.1]}, **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_sweep_is_a_3_by_3_grid_of_single_process_trials() -> None:
    sweep = load_sweep(SHIPPED)
    assert sweep.grid == {"maml.inner_lr": [0.05, 0.1, 0.2], "maml.max_kl": [0.005, 0.01, 0.02]}
    assert sweep.metric == "return/step_1" and sweep.mode == "max"
    config = load_config(sweep.experiment, [*sweep.overrides, "maml.inner_lr=0.2"])
    assert config.workers == 0 and config.iterations == 50 and config.maml.inner_lr == 0.2
    # Each trial reserves the CPUs its one process computes with.
    assert trial_cpus([config]) == config.learner_cpus == 1
    # Command-line overrides come after the file's.
    assert load_config(sweep.experiment, load_sweep(SHIPPED, ["iterations=3"]).overrides
                       ).iterations == 3


@pytest.mark.parametrize("fields, message", [
    ({"grid": {"maml.inner_lrr": [0.1]}}, "maml.inner_lrr"),
    ({"grid": {"maml.inner_lr": [-1.0]}}, "maml.inner_lr"),
    ({"grid": {"maml.inner_lr": []}}, "must be a non-empty list"),
    ({"grid": {}, "random": {}}, "searches nothing"),
    ({"random": {"maml.gamma": {"normal": [0, 1]}}}, "must be one of {uniform"),
    ({"random": {"maml.gamma": {"loguniform": [0, 1]}}}, "low < high"),
    ({"samples": 0}, "'samples' must be an integer >= 1"),
    ({"mode": "best"}, "'mode' must be max or min"),
    ({"trials": 3}, "unknown key 'trials'"),
    ({"set": {**TINY_SET, "workers": 2}}, "workers: 0"),
])
def test_a_bad_sweep_file_is_one_clear_error(tmp_path: Path, fields, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{")):
        load_sweep(write_sweep(tmp_path, **fields))


def test_trial_names_carry_the_number_and_the_settings() -> None:
    name = trial_name("run_trial_86633_00003", {"maml.inner_lr": 0.1, "maml.max_kl": 0.005})
    assert name == "00003_inner_lr=0.1_max_kl=0.005"


@pytest.mark.ray
def test_a_tiny_sweep_runs_each_trial_as_a_run_directory_and_tabulates(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    path = write_sweep(tmp_path, metric="return/step_1")
    done = rlmeta("sweep", str(path), "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert sorted(float(row["maml.inner_lr"]) for row in rows) == [0.05, 0.1]
    for row in rows:
        run_dir = out / row["run_dir"]
        config = load_config(run_dir / "config.yaml")
        assert config.maml.inner_lr == float(row["maml.inner_lr"]) and config.workers == 0
        logged = [r["return/step_1"] for r in read_metrics(run_dir / "metrics.jsonl")]
        assert row["iterations"] == "2" and len(logged) == 2
        assert float(row["best return/step_1"]) == pytest.approx(max(logged))
        assert float(row["last return/step_1"]) == pytest.approx(logged[-1])
        assert (run_dir / "checkpoints").is_dir()
    # Best first, in the printed and the markdown table alike.
    best = [float(row["best return/step_1"]) for row in rows]
    assert best == sorted(best, reverse=True)
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("| maml.inner_lr | iterations |") and markdown in done.stdout + "\n"
