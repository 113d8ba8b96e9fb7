"""Tracking through a whole run: progress lines in a job's log, W&B checked before writing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_cli import TINY, rlmeta

from rlmeta.config_io import load_config
from rlmeta.run.train import train


def test_a_run_without_a_terminal_logs_a_progress_line_every_n_iterations(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    # stderr is a pipe here, as in a cluster job or under nohup.
    done = rlmeta("train", "tiny.yaml", "--run-dir", "run", "--set", "log_every=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("train ")]
    assert [line.split(" (")[0] for line in lines] == ["train 2/4", "train 4/4"]
    assert all("env steps" in line and "ETA" in line and "step_1=" in line for line in lines)


def test_wandb_tracking_without_wandb_fails_before_the_run_dir_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    config = load_config(tmp_path / "tiny.yaml", ["tracking=wandb"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ValueError, match="tracking: wandb needs the wandb package"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_wandb_run_trains_offline_and_resumes_the_same_wandb_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "tiny.yaml").write_text(TINY)
    config = load_config(tmp_path / "tiny.yaml", ["tracking=wandb"])
    train(config, tmp_path / "run", stop_after=2)
    train(config, tmp_path / "run", resume=True)
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    sessions = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    # wandb names a session offline-run-<time>-<run id>, with a suffix of its own when two
    # sessions start within the same second.
    assert len(sessions) == 2, [s.name for s in sessions]
    assert all(f"-{run_id}" in s.name for s in sessions), ([s.name for s in sessions], run_id)
