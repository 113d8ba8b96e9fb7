"""Runtime fault campaign: hostile envs (hanging, raising, returning the wrong thing), killed
actors, an unreachable Ray address and the local Ray instance's network exposure.

Every case asserts the one-line error, the exit status and that the run directory is intact
afterwards (every file parses; completed iterations and their checkpoints survive). The cases
are counted in docs/reliability.md: each parametrized case and each test of the Ray section is
one input.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import ray
import test_distributed_fakes as fakes
import torch
import yaml
from ray import cloudpickle
from test_distributed_fakes import make_fake_algorithm, make_fake_env, specs

from rlmeta import checkpoint
from rlmeta.config import ExperimentConfig
from rlmeta.distributed import RolloutError, make_runtime, ray_runtime
from rlmeta.distributed.errors import RayAddressError
from rlmeta.rollout import EnvStepError, env_call_timeout, sample_rollout
from rlmeta.run.cli import main
from rlmeta.run.stop_signal import StopOnSigterm
from rlmeta_envs.testing import FaultyTaskEnv

ROOT = Path(__file__).resolve().parents[1]
FAULTY = "rlmeta_envs.testing:FaultyTaskEnv"
# Seed 3 draws goals below 0 for both tasks of iteration 0 and one above 0 in iteration 1, so
# `fault_above: 0` breaks the run after its first checkpoint.
TINY = f"""\
algorithm: maml
env: {FAULTY}
iterations: 2
checkpoint_every: 1
workers: 0
envs_per_worker: 2
eval_tasks: 2
seed: 3
env_step_timeout_s: 0.5
policy: {{hidden_sizes: [4]}}
maml: {{meta_batch_size: 2, episodes_per_task: 2}}
"""


def train(tmp_path: Path, capsys, *overrides: str, run: str = "run") -> tuple[int, str]:
    """`rlmeta train` in this process; returns (exit status, stderr)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    sets = [arg for value in overrides for arg in ("--set", value)]
    status = main(["train", str(config), "--run-dir", str(tmp_path / run), *sets])
    return status, capsys.readouterr().err


def error_line(stderr: str) -> str:
    """The one error line; anything else on stderr is progress or Ray's own start-up notes."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_intact(run_dir: Path, iterations: int) -> None:
    """Every file of the run parses and the first `iterations` iterations are all there."""
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env"] == FAULTY
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == list(range(iterations))
    saved = checkpoint.list_checkpoints(run_dir) if iterations else []
    assert [path.name for path in saved] == [
        f"ckpt_{i:06d}.pt" for i in range(1, iterations + 1)
    ]
    for path in saved:
        torch.load(path, weights_only=True)
    # The run's lock file (.lock) stays: it marks the directory's owner while a run holds it.
    leftovers = [p for p in run_dir.rglob("*")
                 if (p.name.startswith(".") and p.name != ".lock") or p.suffix == ".tmp"]
    assert not leftovers


# ---- hostile envs, no Ray ------------------------------------------------------------------

HOSTILE = [
    ("hang_step", 1, r"did not return from step within 0.5s \(env_step_timeout_s\) on task "
                     r"\{goal=-0.829\} at step 1 of episode 0"),
    ("hang_reset", 1, r"did not return from reset within 0.5s \(env_step_timeout_s\)"),
    ("busy_step", 1, r"did not return from step within 0.5s"),
    ("raise_reset", 1, r"raised from reset on task \{goal=-0.829\} at step 0 of episode 0: "
                       r"RuntimeError: the faulty env could not reset"),
    ("nan_observation", 1, r"returned a non-finite observation at step 2: array\(\[nan\]"),
    ("wrong_shape", 1, r"observation of shape \(3,\) from step .* expected shape \(1,\) "
                       r"\(its observation_space\)"),
    ("string_reward", 1, r"returned reward 'high' \(str\) from step .* expected a finite number"),
    ("bad_step_result", 1, r"expected \(observation, reward, terminated, truncated, info\)"),
    ("no_tasks", 2, r"FaultyTaskEnv: sample_tasks\(2, rng\) returned 0 tasks; expected a list "
                    r"of 2 tasks"),
    ("few_tasks", 2, r"sample_tasks\(2, rng\) returned 1 tasks; expected a list of 2"),
]


@pytest.mark.parametrize(("fault", "status", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_env_stops_the_run_with_one_line_naming_it(
    tmp_path: Path, capsys, fault: str, status: int, message: str
) -> None:
    code, stderr = train(tmp_path, capsys, f"env_kwargs={{fault: {fault}}}")
    line = error_line(stderr)
    assert code == status
    assert line.startswith("rlmeta train: error: ")
    assert fault.endswith("tasks") or "env 'FaultyTaskEnv'" in line
    assert re.search(message, line), line
    assert_intact(tmp_path / "run", iterations=0)


@pytest.mark.parametrize("fault", ["hang_step", "raise_reset", "nan_observation", "wrong_shape"])
def test_a_fault_after_a_checkpoint_leaves_the_completed_iteration_intact(
    tmp_path: Path, capsys, fault: str
) -> None:
    code, stderr = train(tmp_path, capsys, f"env_kwargs={{fault: {fault}, fault_above: 0.0}}")
    assert code == 1 and "goal=0.164" in error_line(stderr)
    assert_intact(tmp_path / "run", iterations=1)


@pytest.mark.parametrize("fault", ["hang_step", "hang_reset", "raise_reset", "string_reward"])
def test_drop_skips_the_tasks_of_a_hostile_env_and_the_run_goes_on(
    tmp_path: Path, capsys, fault: str
) -> None:
    code, stderr = train(tmp_path, capsys, "on_env_error=drop",
                         f"env_kwargs={{fault: {fault}, fault_above: 0.0}}")
    assert code == 0, stderr
    assert_intact(tmp_path / "run", iterations=2)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [row["runtime/dropped_tasks"] for row in rows] == [0.0, 1.0]


def test_the_timeout_is_enforced_in_a_subprocess_run_and_can_be_turned_off(tmp_path: Path) -> None:
    # The real command, as a user runs it: the hang ends the process with status 1.
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RLMETA_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "rlmeta.run.cli", "train", "tiny.yaml", "--run-dir", "run",
         "--set", "env_kwargs={fault: hang_step}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "did not return from step within 0.5s" in error_line(done.stderr)
    assert_intact(tmp_path / "run", iterations=0)
    # 0 turns the limit off: the same env then blocks (stopped by the test after 3 s).
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-m", "rlmeta.run.cli", "train", "tiny.yaml", "--run-dir", "off",
             "--set", "env_kwargs={fault: hang_step}", "--set", "env_step_timeout_s=0"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3,
        )


def test_env_step_timeout_s_is_validated(tmp_path: Path, capsys) -> None:
    code, stderr = train(tmp_path, capsys, "env_step_timeout_s=-1")
    expected = "'env_step_timeout_s' must be >= 0 and <= 86400, got -1"
    assert code == 2 and expected in error_line(stderr)
    code, stderr = train(tmp_path, capsys, "env_step_timeout_s=.nan", run="nan")
    assert code == 2 and "'env_step_timeout_s'" in error_line(stderr)
    assert not (tmp_path / "run").exists() and not (tmp_path / "nan").exists()


# ---- the sampler itself ------------------------------------------------------------------


class _ZeroActor:
    def start_sequences(self, slots: np.ndarray) -> None:
        pass

    def act(self, observations, prev_actions, prev_rewards, prev_dones):
        return np.zeros((len(observations), 1), np.float32), np.zeros(len(observations))


class CarelessEnv(FaultyTaskEnv):
    def step(self, action):
        with contextlib.suppress(Exception):  # the timeout is no Exception: not swallowed
            time.sleep(86400)
        return super().step(action)


class SwallowingEnv(FaultyTaskEnv):
    def step(self, action):
        with contextlib.suppress(BaseException):  # swallowed once; the next tick raises again
            time.sleep(86400)
        time.sleep(86400)


@pytest.mark.parametrize("env_class", [CarelessEnv, SwallowingEnv])
def test_an_env_that_catches_the_timeout_is_still_interrupted(env_class) -> None:
    with env_call_timeout(0.2), pytest.raises(EnvStepError, match="did not return from step"):
        sample_rollout([env_class()], _ZeroActor(), num_sequences=1)


def test_a_non_finite_observation_is_named_before_the_reward_it_leads_to() -> None:
    class NanThenNanReward(FaultyTaskEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            if not np.isfinite(action).all():
                reward = float("nan")
            return obs, reward, terminated, truncated, info

    class Propagating(_ZeroActor):
        def act(self, observations, prev_actions, prev_rewards, prev_dones):
            return observations.copy(), np.zeros(len(observations))  # NaN in, NaN out

    env = NanThenNanReward(fault="nan_observation", fault_at=1)
    with pytest.raises(EnvStepError, match="non-finite observation at step 1"):
        sample_rollout([env], Propagating(), num_sequences=1)


def test_the_timeout_sends_no_signal_to_a_healthy_run_and_restores_the_handler() -> None:
    import signal

    received = []
    before = signal.signal(signal.SIGALRM, lambda *_: received.append(1))
    try:
        handler = signal.getsignal(signal.SIGALRM)
        with env_call_timeout(0.04):
            assert signal.getsignal(signal.SIGALRM) is not handler
            rollout = sample_rollout([FaultyTaskEnv(horizon=3)], _ZeroActor(), num_sequences=1)
            time.sleep(0.2)  # several watchdog periods with no env call in progress
        assert rollout.num_steps == 3
        assert signal.getsignal(signal.SIGALRM) is handler and not received
    finally:
        signal.signal(signal.SIGALRM, before)


def test_evaluation_of_a_hanging_env_stops_with_one_line() -> None:
    config = ExperimentConfig(workers=0, envs_per_worker=1, device="cpu",
                              env_step_timeout_s=0.2, on_env_error="drop")
    runtime = make_runtime(config, make_fake_algorithm,
                           lambda: FaultyTaskEnv(fault="hang_step", fault_at=1))
    try:
        with pytest.raises(RolloutError, match=r"did not return from step within 0.2s"):
            runtime.evaluate(specs(1), adapt_steps=1)  # nothing to drop a task for
    finally:
        runtime.shutdown()


def test_outside_the_main_thread_the_limit_is_not_enforced_and_says_so() -> None:
    caught: list[warnings.WarningMessage] = []

    def sample() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with env_call_timeout(5.0):
                sample_rollout([FaultyTaskEnv()], _ZeroActor(), num_sequences=1)
        caught.extend(seen)

    thread = threading.Thread(target=sample)
    thread.start()
    thread.join()
    assert [str(w.message) for w in caught] == [
        "env_step_timeout_s is not enforced outside the main thread of a POSIX process"
    ]


# ---- Ray addresses (before the Ray instance below starts: a running one is reused) -------


def test_an_unreachable_address_fails_within_seconds_with_one_line(tmp_path: Path,
                                                                     capsys) -> None:
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    start = time.monotonic()
    assert not ray.is_initialized()
    code = main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--set", "workers=1",
                 "--address", f"127.0.0.1:{port}"])
    line = error_line(capsys.readouterr().err)
    assert code == 1 and f"Ray address '127.0.0.1:{port}' does not answer" in line
    assert "Connection refused" in line
    assert time.monotonic() - start < ray_runtime.ADDRESS_TIMEOUT_S + 30  # not Ray's minutes
    code = main(["train", str(config), "--run-dir", str(tmp_path / "bad"), "--set", "workers=1",
                 "--address", "no-port-here"])
    assert code == 2 and "must be 'auto', 'host:port'" in error_line(capsys.readouterr().err)


def test_an_address_that_accepts_no_connection_times_out() -> None:
    # A listener whose backlog is full: the kernel drops further connection attempts, as a host
    # behind a firewall does.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        held = []
        try:
            for _ in range(8):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(server.getsockname())
                held.append(client)
            with pytest.raises(RayAddressError, match=r"does not answer \(no answer, waited at "
                                                      r"most 0.5s\)"):
                ray_runtime.check_address(address, timeout_s=0.5)
        finally:
            for client in held:
                client.close()


# ---- Ray: workers, killed actors, network exposure ------------------------------


@pytest.fixture(scope="module")
def ray_instance():
    cloudpickle.register_pickle_by_value(fakes)
    ray_runtime.start_local_ray(2)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(fakes)


def ray_config(**overrides) -> ExperimentConfig:
    return ExperimentConfig(**{"workers": 1, "envs_per_worker": 2, "device": "cpu",
                               **overrides})


@pytest.mark.ray
def test_the_local_ray_instance_listens_on_loopback_only_without_metrics_exporter(
    ray_instance,
) -> None:
    listening = listening_addresses(process_tree(os.getpid()))
    assert len(listening) >= 4  # gcs, raylet, agents, this driver: the check saw them
    exposed = [(address, port) for address, port in listening if not address.is_loopback]
    assert not exposed
    session = ray._private.worker._global_node.get_session_dir_path()
    (export_port,) = glob.glob(f"{session}/metrics_export_port_*")
    assert Path(export_port).read_text().strip() == "-1"  # the node's exporter did not start


def process_tree(root: int) -> set[int]:
    """`root` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            parents[int(stat.split("/")[2])] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | more, bool(more)
    return tree


def listening_addresses(pids: set[int]) -> list[tuple[ipaddress.IPv4Address, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of `pids` holds; an
    IPv4-mapped IPv6 address as the IPv4 address it maps."""
    inodes = set()
    for pid in pids:
        for fd in glob.glob(f"/proc/{pid}/fd/*"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            # /proc prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1]
                           for i in range(0, len(hex_address), 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append((address, int(hex_port, 16)))
    return found


@pytest.mark.ray
@pytest.mark.parametrize(("fault", "on_env_error"),
                         [("hang_step", "raise"), ("hang_step", "drop"), ("raise_reset", "drop")])
def test_a_hostile_env_in_a_ray_worker_is_one_line_or_dropped(
    ray_instance, tmp_path: Path, capsys, fault: str, on_env_error: str
) -> None:
    code, stderr = train(tmp_path, capsys, "workers=1", f"on_env_error={on_env_error}",
                         f"env_kwargs={{fault: {fault}, fault_above: 0.0}}")
    if on_env_error == "raise":
        assert code == 1 and "goal=0.164" in error_line(stderr)
        assert_intact(tmp_path / "run", iterations=1)
    else:
        assert code == 0 and "Traceback" not in stderr and ": error: " not in stderr
        assert_intact(tmp_path / "run", iterations=2)
        rows = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
        assert [json.loads(row)["runtime/dropped_tasks"] for row in rows] == [0.0, 1.0]


def wait_until_dead(actor, attempts: int = 100) -> None:
    """Return once calls to `actor` fail because it died (at most `attempts` × 0.1 s)."""
    for _ in range(attempts):
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError(f"actor {actor} still answers after ray.kill")


@pytest.mark.ray
def test_a_killed_parameter_server_or_learner_is_one_line(ray_instance) -> None:
    runtime = make_runtime(ray_config(), make_fake_algorithm, make_fake_env)
    try:
        results = runtime.collect(runtime.submit(specs(2)))
        ray.kill(runtime.parameter_server)  # the learner publishes to it after each update
        wait_until_dead(runtime.parameter_server)
        with pytest.raises(RolloutError) as server_died:
            runtime.learn(results)
        ray.kill(runtime.learner)
        wait_until_dead(runtime.learner)  # ray.kill returns before the actor has gone
        with pytest.raises(RolloutError) as learner_died:
            runtime.state_dict()
        for caught, start in ((server_died, "learner 0 of 1 failed while updating to weights "
                                            "version 1"),
                              (learner_died, "learner 0 of 1 died while saving a checkpoint")):
            message = str(caught.value)
            assert message.startswith(start) and "ActorDiedError: " in message
            assert "\n" not in message and "Traceback" not in message and len(message) < 500
    finally:
        runtime.shutdown()


@pytest.mark.ray
def test_a_worker_that_keeps_dying_is_one_line(ray_instance) -> None:
    runtime = make_runtime(ray_config(max_task_retries=0), make_fake_algorithm, make_fake_env)
    try:
        ray.get(runtime.workers[0].ready.remote())
        handle = runtime.submit(specs(2, delay=0.5))
        time.sleep(0.5)
        ray.kill(runtime.workers[0], no_restart=False)
        with pytest.raises(RolloutError, match="max_task_retries=0") as caught:
            runtime.collect(handle)
        assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    finally:
        runtime.shutdown()


@pytest.mark.ray
def test_an_error_raised_inside_a_worker_is_one_line_not_a_remote_traceback(
    ray_instance,
) -> None:
    runtime = make_runtime(ray_config(), make_fake_algorithm, make_fake_env)
    try:
        # A parameter server that never publishes what the worker waits for.
        runtime.workers[0].__ray_call__.remote(
            lambda worker: setattr(worker.weights, "wait_s", 0.2))
        runtime._version = 5
        with pytest.raises(RolloutError) as caught:
            runtime.collect(runtime.submit(specs(1)))
        message = str(caught.value)
        assert message.startswith("rollout worker 0 failed on tasks [0]: RuntimeError: ")
        assert "still has weights version 0" in message
        assert "\n" not in message and "Traceback" not in message
    finally:
        runtime.shutdown()


def test_sigterm_ends_training_after_the_iteration_under_way_with_its_checkpoint(
    tmp_path: Path,
) -> None:
    """A scheduler's preemption: SIGTERM to `rlmeta train`, with Ray's workers up, ends the
    session after the iteration under way, with that iteration's checkpoint (the periodic one is
    not due), exit status 143 and the resume command; `rlmeta resume` continues from it."""
    from test_faults_inputs import subprocess_cli

    (tmp_path / "exp.yaml").write_text(textwrap.dedent("""\
        algorithm: maml
        env: rlmeta/Navigation2D-v0
        iterations: 1000
        checkpoint_every: 1000
        workers: 1
        envs_per_worker: 2
        policy: {hidden_sizes: [8]}
        maml: {meta_batch_size: 2, episodes_per_task: 2}
        """))
    process = subprocess_cli("train", "exp.yaml", "--run-dir", "run", cwd=tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert "SIGTERM received" in err and "Traceback" not in err, err
    assert f"continue with: rlmeta resume {Path('run')}" in out, out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    completed = len(rows)
    assert [row["iteration"] for row in rows] == list(range(completed)) and completed < 1000
    latest = checkpoint.latest_checkpoint(tmp_path / "run")
    assert checkpoint.load_checkpoint(latest)["iteration"] == completed

    resumed = subprocess_cli("resume", "run", "--stop-after", "1", cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["iteration"] for row in rows] == list(range(completed + 1))


def test_stop_on_sigterm_asks_once_then_stops_at_once_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSigterm() as stop:
        assert stop({}) is True
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop({}) is False
        with pytest.raises(SystemExit) as exited:
            os.kill(os.getpid(), signal.SIGTERM)
        assert exited.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
