"""Hyperparameter sweeps on Ray Tune: `rlmeta sweep SWEEP.yaml`.

A sweep file names a base experiment, settings every trial shares, and a grid and/or random
search over dotted config keys::

    experiment: ../maml_navigation2d.yaml   # relative to the sweep file
    set: {iterations: 20}                   # every trial (dotted keys allowed)
    grid:                                   # every combination
      maml.inner_lr: [0.05, 0.1, 0.2]
      maml.max_kl: [0.005, 0.01]
    random:                                 # drawn per trial: uniform, loguniform, randint, choice
      maml.gae_lambda: {uniform: [0.9, 1.0]}
    samples: 1        # Tune's num_samples: the grid is repeated this many times
    metric: return/step_1   # default: the algorithm's best-checkpoint metric
    mode: max

Each trial is `rlmeta.run.train.train` on the resolved config, writing a normal run directory
(`<out>/trials/<trial>`), and reports every metrics row to Tune as the run logs it. Trials are
single processes (`workers: 0`: sampling and learning in the trial, with `learner_cpus` torch
threads) that reserve `learner_cpus` CPUs each, so Tune runs as many at once as the local or
cluster Ray instance has CPUs for, and never more. At the end `results.csv` and `results.md`
hold one row per trial: its settings, the metric's last and best value and its run directory.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlmeta.config import ConfigError
from rlmeta.config_io import load_config
from rlmeta.metrics import METRICS_FILE, read_metrics

SWEEP_KEYS = ("experiment", "set", "grid", "random", "samples", "metric", "mode")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
TRIALS_DIR = "trials"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
POLL_S = 0.5


@dataclass
class Sweep:
    path: Path
    experiment: Path
    overrides: list[str]  # `key=value` for every trial
    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: int = 1
    metric: str = ""
    mode: str = "max"

    @property
    def keys(self) -> list[str]:
        return [*self.grid, *self.random]


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: numbers, strings and lists read back


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read and check a sweep file; `overrides` (`key=value`, as `rlmeta train --set`) apply to
    every trial after the file's `set`. Every key must make a valid config (each grid point is
    built once here), so a typo fails before Ray starts or anything is written."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {str(path)!r} must be a mapping with keys "
                          f"{', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"sweep file {str(path)!r}: unknown key {unknown[0]!r}; expected "
                          f"{', '.join(SWEEP_KEYS)}")
    if "experiment" not in data:
        raise ConfigError(f"sweep file {str(path)!r} needs 'experiment', the base config file")
    experiment = (path.parent / str(data["experiment"])).resolve()
    shared = _mapping(data, "set")
    grid = _mapping(data, "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep grid {key!r} must be a non-empty list of values, "
                              f"got {values!r}")
    random = {key: _distribution(key, spec) for key, spec in _mapping(data, "random").items()}
    if not grid and not random:
        raise ConfigError(f"sweep file {str(path)!r} searches nothing: give 'grid' and/or "
                          f"'random' keys")
    samples = data.get("samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"sweep 'samples' must be an integer >= 1, got {samples!r}")
    mode = data.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"sweep 'mode' must be max or min, got {mode!r}")
    overrides = [_override("workers", 0), *(_override(k, v) for k, v in shared.items()),
                 *(overrides or [])]
    sweep = Sweep(path, experiment, overrides, grid, random, samples, "", mode)
    configs = [load_config(experiment, [*overrides, *point]) for point in _grid_points(sweep)]
    if any(config.workers != 0 for config in configs):
        raise ConfigError(
            "sweep trials sample in their own process (workers: 0) so that Tune can count "
            "their CPUs; remove workers from the sweep's set and grid"
        )
    from rlmeta.run.train import best_metric

    sweep.metric = str(data.get("metric") or best_metric(configs[0]))
    return sweep


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"sweep {key!r} must map dotted config keys to values, got {value!r}")
    return value


def _distribution(key: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"sweep random {key!r} must be one of {{{', '.join(DISTRIBUTIONS)}: "
                          f"...}}, e.g. {{uniform: [0.9, 1.0]}}; got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        ok = isinstance(args, list) and len(args) > 0
    else:
        ok = (isinstance(args, list) and len(args) == 2
              and all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
              and args[0] < args[1] and (kind != "loguniform" or args[0] > 0))
    if not ok:
        raise ConfigError(f"sweep random {key!r}: {kind} needs "
                          f"{'a non-empty list' if kind == 'choice' else '[low, high], low < high'}"
                          f", got {args!r}")
    return {kind: args}


def _grid_points(sweep: Sweep) -> list[list[str]]:
    """Overrides of every grid combination, random keys at a valid value (their first)."""
    fixed = [_override(key, _example(spec)) for key, spec in sweep.random.items()]
    combos = itertools.product(*sweep.grid.values()) if sweep.grid else [()]
    return [[*(_override(k, v) for k, v in zip(sweep.grid, combo, strict=True)), *fixed]
            for combo in combos]


def _example(spec: dict[str, Any]) -> Any:
    (args,) = spec.values()
    return args[0]


def param_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {key: tune.grid_search(values) for key, values in sweep.grid.items()}
    for key, spec in sweep.random.items():
        kind, args = next(iter(spec.items()))
        space[key] = tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)
    return space


def trial_name(trial_id: str, params: dict[str, Any]) -> str:
    """E.g. `00003_inner_lr=0.1_max_kl=0.01`: Tune's trial number, then the settings."""
    number = trial_id.rsplit("_", 1)[-1]
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in params.items()]
    return "_".join([number, *parts])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace(" ", "")


def run_trial(params: dict[str, Any], experiment: str, overrides: list[str],
              trials_dir: str) -> None:
    """Tune's trainable: train one config in a thread and report each metrics row it logs."""
    from ray import tune

    from rlmeta.run.train import train

    config = load_config(experiment, [*overrides, *(_override(k, v) for k, v in params.items())])
    run_dir = Path(trials_dir) / trial_name(tune.get_context().get_trial_id(), params)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            train(config, run_dir)
        except BaseException as error:  # re-raised in the trial's thread below
            failure.append(error)

    thread = threading.Thread(target=target, name="rlmeta-train", daemon=True)
    thread.start()
    reported = 0
    while True:
        finished = not thread.is_alive()
        path = run_dir / METRICS_FILE
        rows = read_metrics(path) if path.exists() else []
        for row in rows[reported:]:
            tune.report({**row, "run_dir": str(run_dir)})
        reported = max(reported, len(rows))
        if finished:
            break
        thread.join(POLL_S)
    if failure:
        raise failure[0]


def trial_cpus(configs: list[Any]) -> int:
    """CPUs each trial reserves: its one process computes with `learner_cpus` threads."""
    return max(config.learner_cpus for config in configs)


def run_sweep(sweep: Sweep, out_dir: str | Path, address: str | None = None) -> list[dict]:
    """Run every trial through `ray.tune.Tuner`; returns the results table's rows (also written
    as `results.csv` and `results.md` in `out_dir`)."""
    try:
        import ray
        from ray import tune
    except ImportError as error:
        raise ValueError(f"rlmeta sweep needs Ray Tune ({error}); install it with pip install "
                         f"'rlmeta[tune]'") from None
    out = Path(out_dir).resolve()
    configs = [load_config(sweep.experiment, [*sweep.overrides, *p]) for p in _grid_points(sweep)]
    cpus = trial_cpus(configs)
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(address="local", include_dashboard=False, configure_logging=False)
        else:
            ray.init(address=address)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, experiment=str(sweep.experiment),
                                 overrides=sweep.overrides, trials_dir=str(out / TRIALS_DIR)),
            {"cpu": cpus},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(sweep),
            tune_config=tune.TuneConfig(num_samples=sweep.samples),
            run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0),
        )
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows = results_table(grid, sweep, out)
    write_results(out, rows, sweep)
    return rows


def results_table(grid: Any, sweep: Sweep, out: Path) -> list[dict[str, Any]]:
    """One row per trial: its settings, iterations done, the metric's last and best value, its
    run directory relative to `out`; best first."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        values = ([] if history is None or sweep.metric not in history
                  else [float(v) for v in history[sweep.metric] if v == v])
        best = (max if sweep.mode == "max" else min)(values) if values else math.nan
        metrics = result.metrics or {}
        rows.append({
            **{key: result.config.get(key) for key in sweep.keys},
            "iterations": int(metrics.get("iteration", -1)) + 1,
            f"last {sweep.metric}": values[-1] if values else math.nan,
            f"best {sweep.metric}": best,
            "error": "" if result.error is None else type(result.error).__name__,
            "run_dir": _relative(metrics.get("run_dir", ""), out),
        })
    sign = -1.0 if sweep.mode == "max" else 1.0
    key = f"best {sweep.metric}"
    return sorted(rows, key=lambda row: (math.isnan(row[key]), sign * _or_zero(row[key])))


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out)) if path else ""
    except ValueError:
        return path


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def write_results(out: Path, rows: list[dict[str, Any]], sweep: Sweep) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else [*sweep.keys, "iterations", "run_dir"]
    with (out / RESULTS_CSV).open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / RESULTS_MD).write_text(format_markdown(rows, columns) + "\n")


def format_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def default_out_dir(path: Path) -> Path:
    return Path("runs") / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
