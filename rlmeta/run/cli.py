"""The `rlmeta` command: train, resume, evaluate, sweep, envs, bench.

Errors reach the user as one line on stderr (at most `MAX_ERROR_CHARS` characters) and a
non-zero exit status: 2 for bad usage, configs or inputs, 1 for failures while running. Set
RLMETA_TRACEBACK=1 to see the full traceback.

Run as `python -m rlmeta.run.cli`, the current directory is not searched for modules a config
names (`env: module:Class`): Python puts it first on `sys.path` for `-m`, and the `rlmeta`
script does not, so both find the same modules.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rlmeta.config import MAX_ITERATIONS, MAX_TASKS

EXIT_FAILURE = 1
EXIT_USAGE = 2
MAX_ERROR_CHARS = 1000


class UsageError(Exception):
    """Bad input from the command line; exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlmeta",
        description="Distributed meta-reinforcement learning (MAML-RL and RL²) on Ray + PyTorch.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train from an experiment config",
        description="Train from a YAML experiment config; writes config.yaml, metrics.jsonl, "
        "TensorBoard events and checkpoints to the run directory.",
    )
    train.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. experiments/x.yaml")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. maml.inner_lr=0.05; value read as YAML); "
        "repeatable",
    )
    train.add_argument(
        "--run-dir", help="where to write the run (default: runs/<config stem>-<timestamp>)"
    )
    train.add_argument(
        "--address", help="Ray cluster address ('auto' joins a running cluster); overrides config"
    )
    train.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start from the policy weights of this checkpoint or run directory (same algorithm "
        "and network shape) with a fresh optimiser; sets the config's init_from",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --run-dir: delete its config, metrics, TensorBoard "
        "events, checkpoints and evaluations (other files are kept); without it a run "
        "directory that is not empty is refused",
    )
    _add_stop_after(train)

    resume = commands.add_parser(
        "resume",
        help="continue a stopped run from its last checkpoint",
        description="Continue a stopped run from its newest checkpoint, exactly as if it had not "
        "stopped (same config, tasks, seeds and optimiser state). The config is the run "
        "directory's config.yaml, which must match the checkpoint's unless "
        "--allow-config-change.",
    )
    resume.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by train")
    resume.add_argument(
        "--allow-config-change",
        action="store_true",
        help="continue with the run directory's config.yaml although it differs from the "
        "checkpoint's config (e.g. more iterations); without it such a run is refused, naming "
        "the keys that differ",
    )
    _add_stop_after(resume)

    evaluate = commands.add_parser(
        "evaluate",
        help="fast-adaptation evaluation on held-out tasks",
        description="Evaluate a checkpoint on held-out tasks: return after 0..K inner steps "
        "(MAML) or per episode of a trial (RL²), mean and 95% CI over tasks, next to the run's "
        "random initialisation adapted the same way (and, for a run started with --init-from, "
        "the policy it started from). Writes adaptation.csv and adaptation.png; for a benchmark "
        "with its own protocol (Meta-World) also protocol.json and protocol.csv.",
    )
    evaluate.add_argument(
        "target", metavar="RUN_DIR|CHECKPOINT", help="a run directory (newest checkpoint) or a .pt"
    )
    evaluate.add_argument(
        "--tasks", type=_positive_int(MAX_TASKS),
        help=f"number of tasks, at most {MAX_TASKS} (default: the config's eval_tasks)"
    )
    evaluate.add_argument(
        "--split",
        choices=("train", "test"),
        default="test",
        help="test: tasks from a stream separate from training's (Meta-World: its test tasks); "
        "train: the tasks training drew first (default: test)",
    )
    evaluate.add_argument(
        "--adapt-steps",
        type=_non_negative_int(100),
        help="MAML inner steps to evaluate, 0..K (default: the run's maml.eval_steps, else 3); "
        "ignored by RL²",
    )
    evaluate.add_argument(
        "--actions",
        choices=("sample", "mode"),
        help="RL² only: sample actions as in training, or act on the policy's most probable "
        "action (default: the run's rl2.eval_actions, sample unless set)",
    )
    evaluate.add_argument("--out", help="output directory (default: <run dir>/eval-<split>)")
    evaluate.add_argument(
        "--workers", type=_non_negative_int(10_000),
        help="rollout workers (default: the run's config)"
    )
    evaluate.add_argument(
        "--address",
        help="Ray cluster address (default: a local instance; the address a checkpoint stores "
        "is never contacted unless passed here)",
    )
    evaluate.add_argument(
        "--video",
        type=_non_negative_int(MAX_TASKS),
        default=0,
        metavar="K",
        help="also write an mp4 per task for the first K tasks: the policy before and after "
        "each inner step (MAML) or each episode of a trial (RL²), in <out>/videos "
        "(MuJoCo without a display: MUJOCO_GL=osmesa)",
    )
    _add_protocol_options(evaluate)

    sweep = commands.add_parser(
        "sweep",
        help="hyperparameter sweep on Ray Tune",
        description="Grid and/or random search over config keys on Ray Tune (pip install "
        "'rlmeta[tune]'): each trial a normal run directory under OUT/trials, a results table "
        "(results.csv, results.md) at the end. See docs/tracking-and-sweeps.md for the file.",
    )
    sweep.add_argument("sweep", metavar="SWEEP", help="sweep YAML, e.g. experiments/sweeps/x.yaml")
    sweep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of every trial, after the sweep's set (e.g. iterations=15); "
        "repeatable",
    )
    sweep.add_argument("--out", help="sweep directory (default: runs/<sweep stem>-<timestamp>)")
    sweep.add_argument(
        "--address", help="Ray address ('auto' joins a running cluster; default: a local one)"
    )

    commands.add_parser(
        "envs",
        help="list the registered task families",
        description="List the registered task families with their task parameters.",
    )

    bench = commands.add_parser(
        "bench", help="benchmarks", description="Benchmarks; prints one JSON object."
    )
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", parser_class=_Parser)
    benches.required = True
    sampler = benches.add_parser(
        "sampler",
        help="env steps per second through the rollout workers",
        description="Env steps per second through the Ray rollout workers versus the same envs "
        "and policy stepped in one plain process; prints one JSON object.",
    )
    sampler.add_argument("--env", default="rlmeta/HalfCheetahVel-v0", help="task env id")
    _add_env_kwargs(sampler)
    sampler.add_argument("--workers", type=_positive_int(10_000), default=2,
                         help="rollout workers")
    sampler.add_argument(
        "--envs-per-worker", type=_positive_int(10_000), default=10,
        help="envs stepped together"
    )
    sampler.add_argument("--steps", type=_positive_int(10**8), default=20000,
                         help="env steps to time")
    sampler.add_argument("--seed", type=_non_negative_int(2**32 - 1), default=0, help="seed")
    in_process = benches.add_parser(
        "sampler-in-process",
        help="what the sampler costs per env step without Ray",
        description="CPU time per env step of a worker's sampling path and of a bare loop over "
        "the same envs and policy, alternating task by task in this one process; prints one JSON "
        "object.",
    )
    in_process.add_argument("--env", default="rlmeta/HalfCheetahVel-v0", help="task env id")
    _add_env_kwargs(in_process)
    in_process.add_argument(
        "--envs-per-worker", type=_positive_int(10_000), default=10,
        help="envs stepped together"
    )
    in_process.add_argument("--tasks", type=_positive_int(MAX_TASKS), default=400,
                            help="tasks per loop")
    in_process.add_argument("--blocks", type=_positive_int(10_000), default=10,
                            help="blocks of tasks")
    in_process.add_argument("--seed", type=_non_negative_int(2**32 - 1), default=0, help="seed")
    return parser


def _env_kwargs(text: str) -> dict[str, Any]:
    """A YAML mapping of env constructor arguments, e.g. '{benchmark: ML10}'."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a YAML mapping such as '{{benchmark: ML10}}', got {text!r}")
    return value


def _add_env_kwargs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-kwargs", type=_env_kwargs, default={}, metavar="YAML",
                        help="env constructor arguments as a YAML mapping, e.g. "
                        "'{benchmark: ML10}' (a config's env_kwargs)")
    parser.add_argument("--warmup-tasks", type=_non_negative_int(MAX_TASKS), default=1,
                        metavar="N", help="tasks run untimed first (e.g. one per Meta-World env "
                        "class: each env builds a MuJoCo model per class on first use)")


def _add_stop_after(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stop-after",
        type=_positive_int(MAX_ITERATIONS),
        metavar="N",
        help="stop after N iterations in this session, with a checkpoint (e.g. to fit a job's "
        "time slot); `rlmeta resume` continues",
    )


def _positive_int(limit: int) -> Callable[[str], int]:
    """A parser of integers in 1..`limit` (every count has a bound, as config sizes do)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
        return _at_most(value, limit, text)

    return parse


def _non_negative_int(limit: int) -> Callable[[str], int]:
    """A parser of integers in 0..`limit`."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
        return _at_most(value, limit, text)

    return parse


def _at_most(value: int, limit: int, text: str) -> int:
    if value > limit:
        raise argparse.ArgumentTypeError(f"expected at most {limit}, got {text[:40]!r}")
    return value


def _int(text: str) -> int:
    if len(text) > 100:  # no count is that long, and int() of a huge string takes a while
        raise argparse.ArgumentTypeError(f"expected an integer, got {len(text)} characters")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from rlmeta.config import with_changes
    from rlmeta.config_io import load_config
    from rlmeta.run.train import progress_keys, train

    overrides = list(args.overrides)
    if args.address is not None:
        overrides.append(f"address={args.address}")
    config = load_config(args.config, overrides)
    if args.init_from is not None:
        config = with_changes(config, init_from=args.init_from)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir or Path("runs") / f"{Path(args.config).stem}-{stamp}")
    start = f"; starting from the weights in {config.init_from}" if config.init_from else ""
    _say(f"rlmeta: training {config.algorithm} on {config.env}; run directory {run_dir}{start}")
    summary = train(config, run_dir, stop_after=args.stop_after, overwrite=args.overwrite)
    return _report_training(summary, run_dir, progress_keys(config))


def cmd_resume(args: argparse.Namespace) -> int:
    from rlmeta import checkpoint
    from rlmeta.run.train import check_resume, progress_keys, resume_config, train

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    latest = checkpoint.latest_checkpoint(run_dir)
    state = checkpoint.load_checkpoint(latest)
    config = resume_config(run_dir, state)
    changed = check_resume(config, state, latest, args.allow_config_change)
    if state["iteration"] >= config.iterations:
        _say(f"rlmeta: {run_dir} already finished all {config.iterations} iterations")
        return 0
    with_changes = f", with config.yaml's {', '.join(changed)}" if changed else ""
    _say(f"rlmeta: resuming {run_dir} from {latest.name} (iteration {state['iteration']})"
         f"{with_changes}")
    summary = train(config, run_dir, resume=True, stop_after=args.stop_after,
                    allow_config_change=args.allow_config_change)
    return _report_training(summary, run_dir, progress_keys(config))


def _report_training(summary: dict[str, Any], run_dir: Path, keys: tuple[str, ...]) -> int:
    """Print the session's outcome; the exit status: 0, or 143 (128 + SIGTERM) for a session
    that SIGTERM ended early, so that a command chained after it does not run on a part run."""
    shown = ", ".join(f"{k} {summary[k]:.3f}" for k in keys if summary.get(k) is not None)
    done = summary.get("iteration", -1) + 1
    print(f"run {run_dir}: {done} iterations, {summary.get('env_steps', 0)} env steps; {shown}")
    if summary.get("stopped_by_sigterm"):
        print(f"stopped by SIGTERM after iteration {done - 1}, with a checkpoint; continue with: "
              f"rlmeta resume {run_dir}")
        return 128 + signal.SIGTERM
    print(f"evaluate with: rlmeta evaluate {run_dir}")
    return 0


def _add_protocol_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "benchmark protocol",
        "For an env whose benchmark publishes its own evaluation (Meta-World: "
        "metaworld.evaluation.metalearning_evaluation on the official Meta-World/<benchmark>-"
        "<split> vector envs; ML1 meta-test, ML10/ML25/ML45 meta-train and meta-test), also run "
        "it and write protocol.json and protocol.csv: success per repeat, mean and 95% CI over "
        "repeats, success per task. Defaults are Meta-World's; other values give figures not "
        "comparable with published ones.",
    )
    group.add_argument(
        "--protocol-evals", type=_non_negative_int(1000), metavar="N",
        help="repeats (Meta-World's num_evals; each one a fresh goal batch of meta-batch-size "
        "envs); 0 skips the protocol (default: 10)",
    )
    group.add_argument(
        "--protocol-adaptation-steps", type=_positive_int(100), metavar="K",
        help="adaptation steps before evaluating (MAML: inner steps; default: 1)",
    )
    group.add_argument(
        "--protocol-adaptation-episodes", type=_positive_int(1000), metavar="E",
        help="episodes per env per adaptation step (default: 10)",
    )
    group.add_argument(
        "--protocol-evaluation-episodes", type=_positive_int(1000), metavar="E",
        help="evaluation episodes per env after adapting, each ending at success (default: 3)",
    )
    group.add_argument(
        "--protocol-meta-batch-size", type=_positive_int(10_000), metavar="B",
        help="envs of the official vector env, a multiple of the split's env classes "
        "(default: 20; ML25 train 25, ML45 train 45)",
    )
    group.add_argument(
        "--protocol-max-episode-steps", type=_positive_int(100_000), metavar="T",
        help="episode length (default: Meta-World's 500)",
    )
    group.add_argument(
        "--protocol-actions", choices=("mode", "sample"),
        help="how the adapted policy acts while evaluated: its most probable action (mode, "
        "as Meta-World's docs advise) or sampled (default: mode)",
    )
    group.add_argument(
        "--protocol-vector", choices=("sync", "async"),
        help="step the official envs in this process (sync) or one process per env (async: "
        "every core works; the same figures) (default: sync)",
    )


_PROTOCOL_OPTIONS = {
    "protocol_evals": "num_evals",
    "protocol_adaptation_steps": "adaptation_steps",
    "protocol_adaptation_episodes": "adaptation_episodes",
    "protocol_evaluation_episodes": "evaluation_episodes",
    "protocol_meta_batch_size": "meta_batch_size",
    "protocol_max_episode_steps": "max_episode_steps",
    "protocol_actions": "eval_actions",
    "protocol_vector": "vector_strategy",
}


def _protocol_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, option) for option, key in _PROTOCOL_OPTIONS.items()
            if getattr(args, option) is not None}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rlmeta.run.evaluation import evaluate, format_table

    report = evaluate(
        args.target,
        n_tasks=args.tasks,
        split=args.split,
        adapt_steps=args.adapt_steps,
        out_dir=args.out,
        workers=args.workers,
        address=args.address,
        actions=args.actions,
        video=args.video,
        protocol=_protocol_settings(args),
    )
    tasks = max(s.tasks for s in report.summaries)
    print(f"checkpoint {report.checkpoint}, {tasks} {report.split} tasks (mean ± 95% CI):")
    print(format_table(report.summaries))
    for policy, failed in report.failed_tasks.items():
        if failed:
            print(f"{policy}: {failed} tasks failed with env errors and are left out")
    for note in report.notes:
        print(note)
    print(f"wrote {report.out_dir / 'adaptation.csv'} and {report.out_dir / 'adaptation.png'}")
    if report.videos:
        print(f"wrote {len(report.videos)} videos to {report.videos[0].parent}")
    if report.protocol is not None:
        from rlmeta.run.protocol import format_protocol_table

        settings = report.protocol.raw["settings"]
        shown = ", ".join(f"{key} {value}" for key, value in settings.items())
        print(f"\n{report.protocol.protocol} ({shown}):")
        print(format_protocol_table(report.protocol))
        print(f"wrote {' and '.join(str(path) for path in report.protocol.files)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rlmeta.run.sweep import default_out_dir, format_markdown, load_sweep, run_sweep

    sweep = load_sweep(args.sweep, args.overrides)
    out = Path(args.out) if args.out else default_out_dir(Path(args.sweep))
    _say(f"rlmeta: sweeping {', '.join(sweep.keys)} of {sweep.experiment.name}; "
         f"sweep directory {out}")
    rows = run_sweep(sweep, out, address=args.address)
    print(format_markdown(rows, list(rows[0])) if rows else "no trials ran")
    print(f"wrote {out / 'results.csv'} and {out / 'results.md'}")
    return 0 if rows and not any(row["error"] for row in rows) else EXIT_FAILURE


def cmd_envs(args: argparse.Namespace) -> int:
    import rlmeta_envs

    for env_id, description, task in rlmeta_envs.describe_families():
        print(env_id)
        print(f"    {description}")
        for name, values in task.items():
            print(f"    task.{name}: {values}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    # Imported here: it pulls in Ray, which no other command needs at start-up.
    from rlmeta.distributed import benchmark

    if args.bench == "sampler":
        result = benchmark.sampler_benchmark(
            args.env, args.workers, args.envs_per_worker, args.steps, seed=args.seed,
            env_kwargs=args.env_kwargs, warmup_tasks=args.warmup_tasks,
        )
    else:
        result = benchmark.in_process_benchmark(
            args.env, args.envs_per_worker, args.tasks, args.blocks, seed=args.seed,
            env_kwargs=args.env_kwargs, warmup_tasks=args.warmup_tasks,
        )
    print(json.dumps(result))
    return 0


COMMANDS = {
    "train": cmd_train,
    "resume": cmd_resume,
    "evaluate": cmd_evaluate,
    "sweep": cmd_sweep,
    "envs": cmd_envs,
    "bench": cmd_bench,
}


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was wrong (exit 2) rather than that running failed."""
    from rlmeta.checkpoint import CheckpointError
    from rlmeta.config_io import ConfigError
    from rlmeta.run_dir import RunDirError

    return (UsageError, ConfigError, CheckpointError, RunDirError, ValueError, FileExistsError,
            FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rlmeta` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    prog = f"rlmeta {args.command}"
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return 130
    except Exception as error:
        if os.environ.get("RLMETA_TRACEBACK"):
            raise
        status = EXIT_USAGE if isinstance(error, _usage_errors()) else EXIT_FAILURE
        message = " ".join(str(error).split()) or type(error).__name__
        if status == EXIT_FAILURE and not _is_known_failure(error):
            message = f"{type(error).__name__}: {message}"
        _say(f"{prog}: error: {_clip(message)}")
        return status


def _clip(message: str) -> str:
    """One error line of at most `MAX_ERROR_CHARS` characters, saying how much was cut."""
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"


def _is_known_failure(error: BaseException) -> bool:
    """Errors whose message already says what failed (env errors, non-finite losses)."""
    from rlmeta.rollout import EnvStepError

    known: tuple[type[BaseException], ...] = (EnvStepError, FloatingPointError)
    try:
        from rlmeta.distributed.errors import RayAddressError, RolloutError

        known += (RolloutError, RayAddressError)
    except ImportError:
        pass
    return isinstance(error, known)


if __name__ == "__main__":
    # `python -m` put the current directory first on the module path (unless -P); the `rlmeta`
    # script does not. Dropped so a config's `module:Class` never finds a stray file here.
    if not getattr(sys.flags, "safe_path", False) and sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.exit(main())
