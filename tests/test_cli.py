"""The `rlmeta` command: an end-to-end subprocess run (train, stop, resume, evaluate) with the
real MAML algorithm on Navigation2D, and the error contract (one line, exit 2 for bad input)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlmeta import checkpoint
from rlmeta.run.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
algorithm: maml
env: rlmeta/Navigation2D-v0
iterations: 4
checkpoint_every: 2
keep_checkpoints: 2
workers: 0
envs_per_worker: 3
eval_tasks: 4
seed: 1
policy: {hidden_sizes: [8, 8]}
maml: {meta_batch_size: 3, episodes_per_task: 3}
"""


def rlmeta(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("RLMETA_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "rlmeta.run.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


def final_weights(run_dir: Path) -> dict:
    path = checkpoint.latest_checkpoint(run_dir)
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    return raw["runtime"]["algorithm"]["weights"]


def test_train_stop_resume_evaluate_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    straight = rlmeta("train", "tiny.yaml", "--run-dir", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    stopped = rlmeta("train", "tiny.yaml", "--run-dir", "run", "--stop-after", "3", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    run = tmp_path / "run"
    assert checkpoint.latest_checkpoint(run).name == "ckpt_000003.pt"
    resumed = rlmeta("resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "4 iterations" in resumed.stdout

    # Files present and well-formed.
    assert (run / "config.yaml").read_text().startswith("algorithm: maml")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    assert all("return/step_1" in row and "kl" in row for row in rows)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in checkpoint.list_checkpoints(run)] == [
        "ckpt_000003.pt", "ckpt_000004.pt"
    ]
    assert checkpoint.best_path(run).exists()

    # Stopped and resumed ends with exactly the weights of the uninterrupted run.
    a, b = final_weights(tmp_path / "straight"), final_weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    straight_rows = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["return/step_1"] for r in straight_rows] == [
        row["return/step_1"] for row in rows
    ]

    evaluated = rlmeta("evaluate", "run", "--tasks", "3", "--adapt-steps", "2", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "return/step_2" in evaluated.stdout and "random init" in evaluated.stdout
    with (run / "eval-test" / "adaptation.csv").open() as file:
        table = list(csv.DictReader(file))
    assert {(r["policy"], r["key"]) for r in table} == {
        (p, f"return/step_{k}") for p in ("meta-learned", "random init") for k in range(3)
    }
    assert all(int(r["tasks"]) == 3 for r in table)
    assert (run / "eval-test" / "adaptation.png").read_bytes()[:4] == b"\x89PNG"


def test_config_error_exits_2_naming_the_key_and_the_suggestion(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY.replace("eval_tasks", "eval_taks"))
    result = rlmeta("train", "tiny.yaml", "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rlmeta train: error: unknown config key 'eval_taks'; did you mean 'eval_tasks'?"
    ]
    assert not (tmp_path / "run").exists()


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("command", ["train", "resume", "evaluate", "envs", "bench"])
def test_help_is_complete(capsys, command: str) -> None:
    status, out, _ = run_main(capsys, command, "--help")
    assert status == 0
    expected = {
        "train": ["--set", "--run-dir", "--address", "--init-from", "--stop-after", "CONFIG"],
        "resume": ["RUN_DIR", "--stop-after"],
        "evaluate": ["--tasks", "--split", "--adapt-steps", "--actions", "--out",
                     "RUN_DIR|CHECKPOINT"],
        "envs": ["task families"],
        "bench": ["sampler"],
    }[command]
    for text in expected:
        assert text in out, text
    assert "%%" not in out  # argparse prints descriptions as written: one % is a percent sign


def test_bench_sampler_help_and_output(capsys, monkeypatch) -> None:
    status, out, _ = run_main(capsys, "bench", "sampler", "--help")
    assert status == 0
    for option in ("--env", "--env-kwargs", "--workers", "--envs-per-worker", "--steps"):
        assert option in out
    calls = []

    def fake_benchmark(env_id, workers, envs_per_worker, steps, seed=0, env_kwargs=None,
                       warmup_tasks=1):
        calls.append((env_id, workers, envs_per_worker, steps, seed, env_kwargs, warmup_tasks))
        return {"steps_per_s": 10.0, "raw_steps_per_s": 6.0, "ratio": 10.0 / 12.0}

    from rlmeta.distributed import benchmark

    monkeypatch.setattr(benchmark, "sampler_benchmark", fake_benchmark)
    status, out, _ = run_main(
        capsys, "bench", "sampler", "--env", "rlmeta/Bandit-v0", "--workers", "2",
        "--envs-per-worker", "4", "--steps", "100",
    )
    assert status == 0
    assert json.loads(out) == {"steps_per_s": 10.0, "raw_steps_per_s": 6.0, "ratio": 10.0 / 12.0}
    assert calls == [("rlmeta/Bandit-v0", 2, 4, 100, 0, {}, 1)]
    status, _, _ = run_main(capsys, "bench", "sampler", "--env", "rlmeta/MetaWorld-v0",
                            "--env-kwargs", "{benchmark: ML10, horizon: 200}",
                            "--warmup-tasks", "10")
    assert status == 0
    assert calls[-1][0] == "rlmeta/MetaWorld-v0"
    assert calls[-1][-2:] == ({"benchmark": "ML10", "horizon": 200}, 10)
    status, _, err = run_main(capsys, "bench", "sampler", "--env-kwargs", "ML10")
    assert status == 2 and "expected a YAML mapping such as '{benchmark: ML10}'" in err


def test_bench_sampler_in_process_routes_its_options(capsys, monkeypatch) -> None:
    calls = []

    def fake_benchmark(env_id, envs_per_worker, tasks, blocks, seed=0, env_kwargs=None,
                       warmup_tasks=1):
        calls.append((env_id, envs_per_worker, tasks, blocks, seed, env_kwargs, warmup_tasks))
        return {"ratio": 0.95}

    from rlmeta.distributed import benchmark

    monkeypatch.setattr(benchmark, "in_process_benchmark", fake_benchmark)
    status, out, _ = run_main(
        capsys, "bench", "sampler-in-process", "--envs-per-worker", "4", "--tasks", "20",
        "--blocks", "5", "--env-kwargs", "{horizon: 100}",
    )
    assert status == 0 and json.loads(out) == {"ratio": 0.95}
    assert calls == [("rlmeta/HalfCheetahVel-v0", 4, 20, 5, 0, {"horizon": 100}, 1)]


def test_envs_lists_every_family_with_task_parameters(capsys) -> None:
    import rlmeta_envs

    status, out, _ = run_main(capsys, "envs")
    assert status == 0
    for env_id, _, task in rlmeta_envs.describe_families():
        assert env_id in out
        for name in task:
            assert f"task.{name}:" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trian"], "invalid choice: 'trian'"),
        (["evaluate", "x", "--tasks", "0"], "expected a positive integer, got '0'"),
        (["evaluate", "x", "--split", "val"], "invalid choice: 'val'"),
        (["train", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["train", "x.yaml", "--set", "iterations"], "must have the form key=value"),
        (["evaluate", "nowhere"], "'nowhere' is neither a run directory nor a checkpoint file"),
        (["resume", "nowhere"], "run directory 'nowhere' does not exist"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys, tmp_path: Path, monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text(TINY)
    status, _, err = run_main(capsys, *args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


def test_a_corrupt_checkpoint_is_a_clear_error(capsys, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    checkpoint.checkpoint_path(tmp_path, 2).write_bytes(b"PK\x03\x04 truncated")
    status, _, err = run_main(capsys, "resume", str(tmp_path))
    assert status == 2
    assert "cannot be read (truncated, corrupt or not written by rlmeta)" in err
    assert len(err.strip().splitlines()) == 1


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


def test_bad_env_kwargs_exit_2_naming_the_env(capsys, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(TINY + "env_kwargs: {arms: 5}\n")
    status, _, err = run_main(capsys, "train", str(tmp_path / "bad.yaml"),
                              "--run-dir", str(tmp_path / "r"))
    assert status == 2
    assert last_line(err).startswith("rlmeta train: error: env 'rlmeta/Navigation2D-v0'")
    assert "arms" in last_line(err)
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


def test_env_failure_while_training_exits_1_naming_env_and_task(capsys, tmp_path: Path) -> None:
    (tmp_path / "boom.yaml").write_text(TINY.replace(
        "env: rlmeta/Navigation2D-v0", "env: test_train:ExplodingEnv"
    ))
    status, _, err = run_main(capsys, "train", str(tmp_path / "boom.yaml"),
                              "--run-dir", str(tmp_path / "r"))
    assert status == 1
    line = last_line(err)
    assert line.startswith("rlmeta train: error: ") and "ExplodingEnv" in line
    assert "task {target=" in line and "boom" in line


def test_resume_of_a_finished_run_says_so(capsys, tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    status, out, err = run_main(capsys, "train", str(tmp_path / "tiny.yaml"),
                                "--run-dir", str(tmp_path / "r"), "--set", "iterations=1",
                                "--set", "maml.meta_batch_size=1")
    assert status == 0, err
    assert "1 iterations" in out
    status, _, err = run_main(capsys, "resume", str(tmp_path / "r"))
    assert status == 0 and "already finished all 1 iterations" in err


def test_train_init_from_starts_from_another_runs_policy(capsys, tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    one = ["--set", "iterations=1", "--set", "maml.meta_batch_size=1"]
    status, _, err = run_main(capsys, "train", str(tmp_path / "tiny.yaml"),
                              "--run-dir", str(tmp_path / "first"), *one)
    assert status == 0, err
    status, _, err = run_main(capsys, "train", str(tmp_path / "tiny.yaml"), "--run-dir",
                              str(tmp_path / "warm"), "--init-from", str(tmp_path / "first"), *one)
    assert status == 0, err
    assert f"starting from the weights in {tmp_path / 'first'}" in err
    assert f"init_from: {tmp_path / 'first'}" in (tmp_path / "warm" / "config.yaml").read_text()
    record = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "warm"))
    assert record["init_from"]["checkpoint"] == str(checkpoint.latest_checkpoint(
        tmp_path / "first"))
    # Evaluated, it is shown beside the policy it started from.
    status, out, err = run_main(capsys, "evaluate", str(tmp_path / "warm"), "--tasks", "2",
                                "--adapt-steps", "1")
    assert status == 0, err
    header = [cell.strip() for cell in out.splitlines()[1].split(" | ")[1:]]
    assert header == ["meta-learned", "starting policy", "random init"]

    # Another network shape: one line naming the weights that do not fit, exit 2, no run.
    status, _, err = run_main(capsys, "train", str(tmp_path / "tiny.yaml"), "--run-dir",
                              str(tmp_path / "wide"), "--init-from", str(tmp_path / "first"),
                              "--set", "policy.hidden_sizes=[16, 16]", *one)
    assert status == 2
    line = last_line(err)
    assert line.startswith("rlmeta train: error: init_from ") and "do not fit" in line
    assert "misshapen" in line and "(here (16, 2))" in line
    assert not (tmp_path / "wide").exists()
