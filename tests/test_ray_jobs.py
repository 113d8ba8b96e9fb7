"""Runs that outlive the terminal, as docs/cluster.md launches them: `ray job submit` to a Ray
head (`ray start --head`, started here on 127.0.0.1 and stopped at the end) trains, writes its
run directory, and a second job resumes it while `ray job logs -f` follows."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import TINY

from rlmeta import checkpoint
from rlmeta.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# What the upload of the working directory leaves out (a checkout's venv and runs).
EXCLUDES = json.dumps({"excludes": [".venv", "runs", ".git", "**/__pycache__"]})
PORTS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port",
         "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
         "runtime-env-agent-port", "metrics-export-port")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head with the dashboard (job submission) on 127.0.0.1, its own token and free ports;
    yields (dashboard address, environment for the `ray` CLI). `--block` keeps `ray start` in
    the foreground, so stopping it stops this head alone (never `ray stop`, which stops every
    Ray instance of the user)."""
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    ports = {name: _free_port() for name in PORTS}
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2",
         "--disable-usage-stats", *(f"--{name}={port}" for name, port in ports.items())],
        env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # answering (401 without the token): up
            except OSError:
                assert time.monotonic() < deadline, "the Ray dashboard did not come up"
                time.sleep(1)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def ray_cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_a_submitted_job_trains_writes_its_run_directory_and_resumes(
    tmp_path: Path, ray_head: tuple[str, dict[str, str]]
) -> None:
    address, env = ray_head
    (tmp_path / "tiny.yaml").write_text(TINY)
    run = tmp_path / "run"
    # `python -m rlmeta.run.cli` is `rlmeta` run from the uploaded working directory, so the job
    # runs this checkout's code whatever `rlmeta` script the environment has.
    train = ray_cli(env, "job", "submit", "--address", address, "--working-dir", ".",
                    "--runtime-env-json", EXCLUDES, "--", "python", "-m", "rlmeta.run.cli",
                    "train", str(tmp_path / "tiny.yaml"), "--run-dir", str(run),
                    "--stop-after", "2")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "succeeded" in train.stdout
    assert checkpoint.latest_checkpoint(run).name == "ckpt_000002.pt"
    assert [row["iteration"] for row in read_metrics(run / "metrics.jsonl")] == [0, 1]

    job_id = f"rlmeta-resume-{secrets.token_hex(4)}"
    submitted = ray_cli(env, "job", "submit", "--address", address, "--working-dir", ".",
                        "--runtime-env-json", EXCLUDES, "--submission-id", job_id, "--no-wait",
                        "--", "python", "-m", "rlmeta.run.cli", "resume", str(run))
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    followed = ray_cli(env, "job", "logs", "--address", address, "--follow", job_id)
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert "resuming" in followed.stdout and "4 iterations" in followed.stdout
    status = ray_cli(env, "job", "status", "--address", address, job_id)
    assert "succeeded" in status.stdout
    assert [row["iteration"] for row in read_metrics(run / "metrics.jsonl")] == [0, 1, 2, 3]
    assert checkpoint.latest_checkpoint(run).name == "ckpt_000004.pt"
