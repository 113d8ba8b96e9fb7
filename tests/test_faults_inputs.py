"""The fault and bad-input campaign, input and data half: hostile configs, corrupted and foreign
checkpoints, run directories shared by two writers or holding another run's files, and configs
that name code to import.

Each case asserts the one-line error, the exit status, and that the run directory is byte for
byte what it was before (the `.lock` file aside: it only names the last holder). The cases run
the CLI in this process (`rlmeta.run.cli.main`) with the fake algorithm and env of
`test_train`, except where a second process is the point (concurrent runs, a killed holder,
`python -m` and the current directory).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel

from rlmeta import checkpoint, run_dir
from rlmeta.config import ExperimentConfig, _unwrap, sections
from rlmeta.config_io import ConfigError, config_from_dict, config_to_dict, load_config
from rlmeta.run import build
from rlmeta.run.cli import main
from rlmeta.run.evaluation import evaluation_config
from rlmeta.run.train import train

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
algorithm: maml
env: test_train:TargetEnv
iterations: 4
checkpoint_every: 2
keep_checkpoints: 2
workers: 0
envs_per_worker: 2
seed: 5
maml: {meta_batch_size: 3}
"""


@pytest.fixture(autouse=True)
def fake_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    import test_train  # noqa: F401  (the env and algorithm below live there)

    monkeypatch.setitem(build.ALGORITHM_CLASSES, "maml", "test_train:FakeAlgorithm")


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Exit status and the one stderr line of an error (asserted to be one line)."""
    try:
        status = main([str(arg) for arg in args])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err.strip()
    if status != 0:
        lines = err.splitlines()
        assert len(lines) >= 1 and not any("Traceback" in line for line in lines), err
        err = lines[-1]
        assert len(err) <= 1100, len(err)
    return status, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (the lock file aside)."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != run_dir.LOCK_FILE
    }


def trained(folder: Path, stop_after: int | None = None, **overrides: Any) -> Path:
    data = load_config(write(folder.parent / f"{folder.name}.yaml", BASE))
    train(config_from_dict({**config_to_dict(data), **overrides}), folder, stop_after=stop_after)
    return folder


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- hostile configs ------------------------------------------------------------------------------

_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
_MANY_KEYS = "env_kwargs: {" + ", ".join(f"k{i}: 0" for i in range(2000)) + "}\n"
CONFIGS = [
    ("sexagesimal", BASE.replace("seed: 5", "seed: 1:30"),
     "config key 'seed' must be an integer, got '1:30'"),
    ("yes is not true", BASE.replace("maml: {", "maml: {first_order: yes, "),
     "'maml.first_order' must be true or false, got 'yes'"),
    ("on is not true", BASE.replace("maml: {", "maml: {learn_inner_lr: on, "),
     "'maml.learn_inner_lr' must be true or false, got 'on'"),
    ("timestamp", BASE.replace("seed: 5", "seed: 2001-12-14"),
     "'seed' must be an integer, got '2001-12-14'"),
    ("fraction for an integer", BASE.replace("iterations: 4", "iterations: 2.7"),
     "'iterations' must be an integer, got 2.7"),
    ("duplicate key", BASE + "seed: 6\n", "key 'seed' is given twice in one mapping (line 10)"),
    ("duplicate nested key", BASE.replace("maml: {", "maml: {meta_batch_size: 2, "),
     "key 'meta_batch_size' is given twice"),
    ("alias bomb", _BOMB, "expands to more than 100000 values (aliases included)"),
    ("self-containing alias", "env_kwargs: &a {x: *a}\n", "refers to a value that contains it"),
    ("merge key", "<<: {seed: 1}\n", "unknown config key '<<'"),
    ("nested too deeply", "env_kwargs: " + "[" * 5000 + "]" * 5000 + "\n",
     "is nested too deeply"),
    ("2000 env kwargs", BASE + _MANY_KEYS, "'env_kwargs' holds more than 1000 items, got {"),
    ("over a megabyte", BASE + "# " + "x" * (1 << 20) + "\n", "expected an experiment config "
     "of at most 1048576 bytes"),
    ("utf-16", BASE.encode("utf-16"), "is not UTF-8 text (byte 0xff at offset 0)"),
    ("binary", bytes(range(256)) * 4, "is not UTF-8 text (byte 0x80 at offset 128)"),
    ("nul", BASE.encode() + b"\x00\n", "holds a NUL character"),
    ("a list", "- 1\n- 2\n", "must hold a mapping of keys to values, got list"),
    ("invalid yaml", "a: [1, 2\n", "is not valid YAML"),
    ("10**12 iterations", BASE.replace("iterations: 4", "iterations: 1000000000000"),
     "'iterations' must be > 0 and <= 1000000, got 1000000000000"),
    ("10**9 episodes", BASE.replace("maml: {", "maml: {episodes_per_task: 1000000000, "),
     "'maml.episodes_per_task' must be > 0 and <= 10000"),
    ("huge layer", BASE + "policy: {hidden_sizes: [1000000]}\n",
     "every item of 'policy.hidden_sizes' must be > 0 and <= 16384"),
    ("100 layers", BASE + f"policy: {{hidden_sizes: {[8] * 100}}}\n",
     "'policy.hidden_sizes' holds more than 64 items"),
    ("huge seed", BASE.replace("seed: 5", "seed: 100000000000000000000000"),
     "'seed' must be >= 0 and <= 4294967295"),
    ("nan", BASE.replace("maml: {", "maml: {inner_lr: .nan, "),
     "'maml.inner_lr' must be a finite number, got nan"),
    ("inf", BASE + "rl2: {lr: .inf}\n", "'rl2.lr' must be a finite number, got inf"),
    ("long init_from", BASE + "env_kwargs: {}\n" + "init_from: " + "x" * 5000 + "\n",
     "'init_from' must be at most 4096 characters"),
    ("horizon 2.7", BASE.replace("env: test_train:TargetEnv", "env: rlmeta/Navigation2D-v0")
     + "env_kwargs: {horizon: 2.7}\n",
     "env_kwargs.horizon must be an integer (the constructor's annotation), got 2.7"),
    ("nan env kwarg", BASE.replace("env: test_train:TargetEnv", "env: rlmeta/Navigation2D-v0")
     + "env_kwargs: {goal_radius: .nan}\n", "env_kwargs.goal_radius must be a finite number"),
    ("not an env class", BASE.replace("env: test_train:TargetEnv", "env: os:system"),
     "module 'os' has no gymnasium.Env subclass 'system'"),
    ("gym id with a module", BASE.replace("env: test_train:TargetEnv", "env: antigravity:Fly-v0"),
     "'Fly-v0' is not a class name"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_a_hostile_config_is_one_line_exit_2_and_nothing_written(
    capsys, tmp_path: Path, text: str | bytes, message: str
) -> None:
    config = write(tmp_path / "exp.yaml", text)
    status, err = cli(capsys, "train", config, "--run-dir", tmp_path / "run")
    assert status == 2
    assert err.startswith("rlmeta train: error: ") and message in err, err
    assert len(err) < 400
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["folder", "/dev/zero"])
def test_a_config_path_that_is_no_file_is_refused(capsys, tmp_path: Path, name: str) -> None:
    path = tmp_path if name == "folder" else Path(name)
    status, err = cli(capsys, "train", path, "--run-dir", tmp_path / "run")
    assert status == 2 and f"config file '{path}' is not a regular file" in err, err
    assert not (tmp_path / "run").exists()


OVERRIDES = [
    ("seed=1:30", "'seed' must be an integer, got '1:30'"),
    ("maml.first_order=yes", "'maml.first_order' must be true or false, got 'yes'"),
    ("env_kwargs={a: 1, a: 2}", "key 'a' is given twice"),
    ("maml.inner_lr=.nan", "'maml.inner_lr' must be a finite number"),
    ("iterations=1e12", "'iterations' must be an integer, got 1000000000000.0"),
    ("workers=20000", "'workers' must be >= 0 and <= 10000, got 20000"),
    ("env_kwargs=&a [*a]", "refers to a value that contains it"),
]


@pytest.mark.parametrize(("override", "message"), OVERRIDES)
def test_a_hostile_override_is_one_line_exit_2(
    capsys, tmp_path: Path, override: str, message: str
) -> None:
    config = write(tmp_path / "exp.yaml", BASE)
    status, err = cli(capsys, "train", config, "--run-dir", tmp_path / "run", "--set", override)
    assert status == 2 and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_100k_key_env_kwargs_makes_a_short_error_line() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"env_kwargs": {f"k{i}": i for i in range(100_000)}})
    assert len(str(info.value)) < 300 and "holds more than 1000 items" in str(info.value)


def _fields(kind: Any) -> list[str]:
    """Dotted keys of every setting whose type (or list item type) is `kind`."""
    found = []

    def walk(model: Any, prefix: str) -> None:
        for name, info in model.model_fields.items():
            base = _unwrap(info.annotation)[0]
            if isinstance(base, type) and issubclass(base, BaseModel):
                walk(base, f"{prefix}{name}.")
                continue
            members = typing.get_args(base) if typing.get_origin(base) is not list else (
                _unwrap(typing.get_args(base)[0])[0],)
            if base is kind or kind in members:
                found.append(prefix + name)

    walk(ExperimentConfig, "")
    for section in sections():
        walk(section.model, section.key + ".")
    return found


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


FLOAT_KEYS = _fields(float)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_every_float_setting_refuses_nan_and_inf(key: str, value: Any) -> None:
    is_list = key == "maml.eval_inner_lrs"
    with pytest.raises(ConfigError) as info:
        config_from_dict(_nested(key, [value] if is_list else value))
    assert f"'{key}' must be a finite number" in str(info.value)


INT_KEYS = _fields(int)


@pytest.mark.parametrize("key", INT_KEYS)
def test_every_integer_setting_has_an_upper_bound_named_in_its_error(key: str) -> None:
    is_list = key == "policy.hidden_sizes"
    with pytest.raises(ConfigError) as info:
        config_from_dict(_nested(key, [10**15] if is_list else 10**15))
    assert f"'{key}' must be " in str(info.value) and " and <= " in str(info.value)


def test_the_schema_walk_finds_the_settings() -> None:
    assert {"maml.inner_lr", "rl2.lr", "maml.gamma", "policy.init_log_std"} <= set(FLOAT_KEYS)
    assert {"iterations", "seed", "workers", "maml.episodes_per_task", "rl2.hidden_size",
            "policy.hidden_sizes"} <= set(INT_KEYS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "x", "--tasks", str(10**9)], "expected at most 100000, got '1000000000'"),
        (["evaluate", "x", "--tasks", "9" * 5000], "expected an integer, got 5000 characters"),
        (["evaluate", "x", "--adapt-steps", "1000"], "expected at most 100"),
        (["train", "x.yaml", "--stop-after", str(10**12)], "expected at most 1000000"),
        (["bench", "sampler", "--steps", str(10**12)], "expected at most 100000000"),
    ],
)
def test_every_count_on_the_command_line_is_bounded(capsys, args: list[str], message: str) -> None:
    status, err = cli(capsys, *args)
    assert status == 2 and message in err, err


# -- what a config or checkpoint may import ------------------------------------------------------

MARKER = "import_ran.txt"


def _module(folder: Path, name: str, body: str) -> Path:
    """A module that leaves a marker file when its top level runs."""
    source = f"from pathlib import Path\nPath({str(folder / MARKER)!r}).write_text('ran')\n"
    return write(folder / f"{name}.py", source + textwrap.dedent(body))


def test_a_module_whose_source_lacks_the_class_is_never_run(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _module(tmp_path, "payload_mod", "def run():\n    pass\n")
    config = write(tmp_path / "exp.yaml", BASE.replace("test_train:TargetEnv", "payload_mod:Env"))
    status, err = cli(capsys, "train", config, "--run-dir", tmp_path / "run")
    assert status == 2 and "its source defines no such name; it was not imported" in err, err
    assert not (tmp_path / MARKER).exists() and "payload_mod" not in sys.modules


def test_a_class_that_is_no_env_is_never_constructed(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write(tmp_path / "plain_mod.py", textwrap.dedent(f"""\
        from pathlib import Path
        class Env:
            def __init__(self):
                Path({str(tmp_path / MARKER)!r}).write_text('constructed')
        """))
    config = write(tmp_path / "exp.yaml", BASE.replace("test_train:TargetEnv", "plain_mod:Env"))
    status, err = cli(capsys, "train", config, "--run-dir", tmp_path / "run")
    assert status == 2 and "module 'plain_mod' has no gymnasium.Env subclass 'Env'" in err, err
    assert not (tmp_path / MARKER).exists()
    sys.modules.pop("plain_mod", None)


def subprocess_cli(*args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RLMETA_TRACEBACK", None)
    return subprocess.Popen([sys.executable, "-m", "rlmeta.run.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_python_m_does_not_search_the_current_directory(tmp_path: Path) -> None:
    _module(tmp_path, "stray_env", """\
        import gymnasium as gym
        class StrayEnv(gym.Env):
            pass
        """)
    write(tmp_path / "exp.yaml", BASE.replace("test_train:TargetEnv", "stray_env:StrayEnv"))
    process = subprocess_cli("train", "exp.yaml", "--run-dir", "run", cwd=tmp_path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith(
        "rlmeta train: error: env 'stray_env:StrayEnv': cannot import module 'stray_env'")
    assert "PYTHONPATH" in err
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "run").exists()


def test_evaluate_never_contacts_the_address_a_checkpoint_stores() -> None:
    stored = config_from_dict({"address": "10.255.255.1:6379", "workers": 2})
    assert evaluation_config(stored, "test").address is None
    assert evaluation_config(stored, "test", address="auto").address == "auto"


# -- checkpoints ---------------------------------------------------------------------------------


def _flip(path: Path, count: int = 400) -> None:
    """Flip `count` bytes inside the largest tensor's data (torch's RNG state), where torch.load
    itself notices nothing."""
    raw = bytearray(path.read_bytes())
    state = torch.load(path, weights_only=True)["torch_rng_state"].numpy().tobytes()
    start = raw.find(state)
    assert start > 0
    for i in range(start + 1000, start + 1000 + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return trained(tmp_path / "run", stop_after=2)


def test_flipped_bytes_that_torch_reads_are_refused_by_resume_evaluate_and_init_from(
    capsys, tmp_path: Path, run: Path
) -> None:
    latest = checkpoint.latest_checkpoint(run)
    _flip(latest)
    torch.load(latest, weights_only=True)  # torch reads the corrupted file without a word
    before = snapshot(run)
    corrupt = "is corrupt: its contents do not match the sha256 digest stored in it"
    for args in (["resume", run], ["evaluate", run], ["evaluate", latest],
                 ["train", write(tmp_path / "e.yaml", BASE), "--run-dir", tmp_path / "warm",
                  "--init-from", run]):
        status, err = cli(capsys, *args)
        assert status == 2 and corrupt in err, (args, err)
    assert snapshot(run) == before and not (tmp_path / "warm").exists()


def _rewritten(path: Path, change: Any) -> None:
    """Load the file as torch would, change it, save it back without recomputing the digest."""
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _attack(tag: str, target: Path) -> Any:
    class Payload:
        def __reduce__(self) -> Any:
            return {
                "os.system": (os.system, (f"touch {target}",)),
                "eval": (eval, (f"open({str(target)!r}, 'w')",)),
                "exec": (exec, (f"open({str(target)!r}, 'w')",)),
                "subprocess": (subprocess.call, (["touch", str(target)],)),
                "pathlib": (Path.touch, (target,)),
            }[tag]

    return Payload()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("tag", ["os.system", "eval", "exec", "subprocess", "pathlib"])
def test_a_pickle_payload_in_a_checkpoint_never_runs(
    capsys, tmp_path: Path, run: Path, tag: str
) -> None:
    target = tmp_path / "pwned"
    latest = checkpoint.latest_checkpoint(run)
    state = torch.load(latest, weights_only=True)
    state["config"]["env_kwargs"] = {"x": _attack(tag, target)}
    with latest.open("wb") as file:
        torch.save(state, file, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    before = snapshot(run)
    for args in (["resume", run], ["evaluate", latest]):
        status, err = cli(capsys, *args)
        assert status == 2 and "cannot be read" in err, err
    assert not target.exists() and snapshot(run) == before


CHECKPOINT_FAULTS = [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read"),
    ("empty", lambda p: p.write_bytes(b""), "cannot be read"),
    ("text", lambda p: p.write_text("hello"), "cannot be read"),
    ("digest removed", lambda p: _rewritten(p, lambda s: s.pop("sha256")),
     "has no sha256 digest of its contents"),
    ("weights edited", lambda p: _rewritten(
        p, lambda s: s["runtime"]["algorithm"]["weights"]["mean"].add_(1.0)), "is corrupt"),
    ("iteration edited", lambda p: _rewritten(p, lambda s: s.update(iteration=1)), "is corrupt"),
    ("format 1", lambda p: _rewritten(p, lambda s: s.update(version=1)),
     "has format version 1, written before checkpoints carried a digest"),
    ("not a dict", lambda p: torch.save([1, 2], p), "is not an rlmeta checkpoint"),
]


@pytest.mark.parametrize(("fault", "message"), [c[1:] for c in CHECKPOINT_FAULTS],
                         ids=[c[0] for c in CHECKPOINT_FAULTS])
def test_a_damaged_checkpoint_is_refused_naming_the_problem(
    capsys, run: Path, fault: Any, message: str
) -> None:
    fault(checkpoint.latest_checkpoint(run))
    before = snapshot(run)
    for command in ("resume", "evaluate"):
        status, err = cli(capsys, command, run)
        assert status == 2 and message in err, (command, err)
        assert "ckpt_000002.pt" in err
    assert snapshot(run) == before


def _foreign(run: Path, **config: Any) -> Path:
    """Another run's checkpoint (its own algorithm or env), newer than this run's."""
    plain = {**config_to_dict(config_from_dict({"env": "test_train:TargetEnv"})), **config}
    state = checkpoint.make_checkpoint(plain, {"algorithm": {"weights": {}}}, 99, 10, {})
    return checkpoint.save_checkpoint(state, checkpoint.checkpoint_path(run, 99))


@pytest.mark.parametrize("config", [{"algorithm": "rl2"}, {"env": "rlmeta/Bandit-v0"}])
def test_another_runs_checkpoint_in_a_run_directory_is_refused(
    capsys, run: Path, config: dict
) -> None:
    path = _foreign(run, **config)
    before = snapshot(run)
    for args in (["resume", run], ["evaluate", run], ["evaluate", path]):
        status, err = cli(capsys, *args)
        assert status == 2 and "belongs to another run" in err, (args, err)
        assert "already finished" not in err
    assert snapshot(run) == before


def test_an_edited_config_is_refused_naming_the_keys_unless_allowed(capsys, run: Path) -> None:
    file = run / "config.yaml"
    file.write_text(file.read_text().replace("iterations: 4", "iterations: 6")
                    .replace("eval_tasks: 40", "eval_tasks: 7"))
    before = snapshot(run)
    status, err = cli(capsys, "resume", run)
    assert status == 2, err
    assert "config differs" in err and "(keys: eval_tasks, iterations)" in err
    assert "--allow-config-change" in err and snapshot(run) == before

    status, err = cli(capsys, "resume", run, "--allow-config-change")
    assert status == 0, err
    assert "with config.yaml's eval_tasks, iterations" in err
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run))
    assert state["iteration"] == 6 and state["config"]["iterations"] == 6
    assert load_config(file) == config_from_dict(state["config"])  # the file shows the run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == list(range(6))


def test_an_edited_algorithm_or_env_is_another_run_even_when_allowed(capsys, run: Path) -> None:
    file = run / "config.yaml"
    file.write_text(file.read_text().replace("algorithm: maml", "algorithm: rl2"))
    before = snapshot(run)
    status, err = cli(capsys, "resume", run, "--allow-config-change")
    assert status == 2 and "belongs to another run: algorithm 'maml'" in err, err
    assert snapshot(run) == before


def test_a_run_whose_config_file_is_gone_resumes_from_the_checkpoint(capsys, run: Path) -> None:
    (run / "config.yaml").unlink()
    status, err = cli(capsys, "resume", run)
    assert status == 0, err
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run))["config"]
    assert load_config(run / "config.yaml") == config_from_dict(saved)


def test_resume_through_python_refuses_a_config_file_edited_since(run: Path) -> None:
    file = run / "config.yaml"
    config = load_config(file)
    file.write_text(file.read_text().replace("iterations: 4", "iterations: 5"))
    with pytest.raises(ValueError, match=r"config.yaml' differs from the config to resume with "
                                         r"\(keys: iterations\)"):
        train(config, run, resume=True)


# -- run directories -----------------------------------------------------------------------------

PARTIAL = [
    ("metrics without checkpoints", {"metrics.jsonl": '{"iteration": 0, "loss": 1.5}\n'},
     "is not empty (metrics.jsonl) and holds no checkpoint to resume"),
    ("config only", {"config.yaml": "seed: 3\n"}, "is not empty (config.yaml)"),
    ("a foreign file", {"notes.txt": "mine"}, "is not empty (notes.txt)"),
    ("many files", {f"f{i}": "x" for i in range(6)}, "(f0, f1, f2, f3 and 2 more)"),
]


@pytest.mark.parametrize(("files", "message"), [c[1:] for c in PARTIAL],
                         ids=[c[0] for c in PARTIAL])
def test_a_new_run_refuses_a_directory_that_is_not_empty(
    capsys, tmp_path: Path, files: dict, message: str
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for name, text in files.items():
        write(folder / name, text)
    before = snapshot(folder)
    status, err = cli(capsys, "train", write(tmp_path / "e.yaml", BASE), "--run-dir", folder)
    assert status == 2 and message in err and "--overwrite" in err, err
    assert snapshot(folder) == before


def test_overwrite_replaces_an_earlier_run_and_keeps_other_files(capsys, tmp_path: Path) -> None:
    folder = trained(tmp_path / "run")
    write(folder / "notes.txt", "mine")
    (folder / "eval-test").mkdir()
    config = write(tmp_path / "e.yaml", BASE.replace("seed: 5", "seed: 8"))
    status, err = cli(capsys, "train", config, "--run-dir", folder)
    assert status == 2 and "already has checkpoints" in err, err
    status, err = cli(capsys, "train", config, "--run-dir", folder, "--overwrite")
    assert status == 0, err
    assert (folder / "notes.txt").read_text() == "mine" and not (folder / "eval-test").exists()
    assert load_config(folder / "config.yaml").seed == 8
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(folder))["config"]["seed"] == 8
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 4


def test_a_run_directory_that_is_a_file_is_refused(capsys, tmp_path: Path) -> None:
    write(tmp_path / "run", "x")
    status, err = cli(capsys, "train", write(tmp_path / "e.yaml", BASE), "--run-dir",
                      tmp_path / "run")
    assert status == 2 and "is a file; expected a directory" in err
    assert (tmp_path / "run").read_text() == "x"


def test_a_second_writer_is_refused_naming_the_holder(capsys, tmp_path: Path, run: Path) -> None:
    holder = run_dir.claim(run, resume=True)
    try:
        before = snapshot(run)
        expected = f"is in use by pid {os.getpid()} on "
        for args in (["resume", run], ["train", write(tmp_path / "e.yaml", BASE), "--run-dir",
                                       run, "--overwrite"]):
            status, err = cli(capsys, *args)
            assert status == 2 and expected in err, (args, err)
        assert snapshot(run) == before
    finally:
        holder.release()
    status, err = cli(capsys, "resume", run)
    assert status == 0, err


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    code = ("import sys, time\nfrom rlmeta import run_dir\nrun_dir.claim(sys.argv[1])\n"
            "print('claimed', flush=True)\ntime.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "claimed"
        with pytest.raises(run_dir.RunDirError, match=f"is in use by pid {process.pid} on "):
            run_dir.claim(folder)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    run_dir.claim(folder).release()  # the kernel released the dead holder's lock


def test_a_run_that_cannot_start_leaves_no_directory(capsys, tmp_path: Path) -> None:
    bad = write(tmp_path / "e.yaml", BASE + "init_from: nowhere.pt\n")
    status, err = cli(capsys, "train", bad, "--run-dir", tmp_path / "run")
    assert status == 2 and "neither a run directory nor a checkpoint" in err
    assert not (tmp_path / "run").exists()


def test_two_runs_started_at_once_on_one_directory(tmp_path: Path) -> None:
    """The real thing: two `rlmeta train --run-dir D` processes at once. One runs; the other
    exits 2 with one line (in use, or the first already wrote there); D holds one run."""
    tiny = textwrap.dedent("""\
        algorithm: maml
        env: rlmeta/Navigation2D-v0
        iterations: 3
        checkpoint_every: 1
        workers: 0
        envs_per_worker: 2
        policy: {hidden_sizes: [8]}
        maml: {meta_batch_size: 2, episodes_per_task: 2}
        """)
    for seed in (1, 2):
        write(tmp_path / f"s{seed}.yaml", tiny + f"seed: {seed}\n")
    processes = [subprocess_cli("train", f"s{seed}.yaml", "--run-dir", "D", cwd=tmp_path)
                 for seed in (1, 2)]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in processes]
    statuses = sorted(status for status, _ in results)
    assert statuses == [0, 2], results
    loser = next(err for status, err in results if status == 2).strip().splitlines()[-1]
    assert ("is in use by" in loser or "already has checkpoints" in loser
            or "is not empty" in loser), loser
    winner = 1 if results[0][0] == 0 else 2
    folder = tmp_path / "D"
    assert load_config(folder / "config.yaml").seed == winner
    for path in [*checkpoint.list_checkpoints(folder), checkpoint.best_path(folder)]:
        assert checkpoint.load_checkpoint(path)["config"]["seed"] == winner
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [0, 1, 2]
