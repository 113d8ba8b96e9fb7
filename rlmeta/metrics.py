"""What a training run writes and shows: `metrics.jsonl`, TensorBoard scalars, progress.

Each iteration is one JSON line (flushed as written, so a crash loses nothing already logged)
and the same scalars in TensorBoard event files under `<run_dir>/tensorboard`, against the
iteration. The TensorBoard run `tensorboard/by_env_steps` holds every scalar again under the tag
`by_env_steps/<name>` against the env steps so far: a run of its own, so purging a resumed run's
points (by step) never mixes the two axes. A new run also writes its resolved config as
TensorBoard text (`config`) and hyperparameters (the HPARAMS tab, flattened dotted keys). On
resume, lines and TensorBoard points from iterations after the checkpoint are discarded so the
logs read as one uninterrupted run. `tracking="wandb"` also starts a Weights & Biases run, resumed
with the run, that gets the same rows and, at the end of each session, the TensorBoard files.
(Rows are logged directly rather than through `sync_tensorboard`, whose file watcher missed
points written just before a short session ended.)

Progress goes to stderr: a tqdm bar on a terminal, and where stderr is not one (a cluster job,
`nohup`) one plain line every `every` iterations, so a log file shows how far a run got.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from tensorboardX import SummaryWriter
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
BY_ENV_STEPS = "by_env_steps"  # TensorBoard run (subdirectory) and tag prefix
TRACKING = ("tensorboard", "wandb")
WANDB_ID_FILE = "wandb_run_id"


def _plain(value: Any) -> float | int | None:
    """A JSON-safe number: tensors and numpy scalars become floats, non-finite becomes null."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete lines of a `metrics.jsonl` (a partial last line from a crash is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(path: str | Path, before_iteration: int) -> None:
    """Keep only lines with `iteration < before_iteration`; rewritten atomically."""
    path = Path(path)
    if not path.exists():
        return
    kept = [row for row in read_metrics(path) if row.get("iteration", -1) < before_iteration]
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("".join(json.dumps(row) + "\n" for row in kept))
    os.replace(temp, path)


def check_tracking(tracking: str) -> None:
    """A one-line error, before a run writes anything, for a tracker that cannot start."""
    if tracking not in TRACKING:
        raise ValueError(f"tracking must be one of {', '.join(TRACKING)}, got {tracking!r}")
    if tracking == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError(
                "tracking: wandb needs the wandb package; install it with pip install "
                "'rlmeta[wandb]'"
            ) from None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config data as {dotted key: value}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _hparam(value: Any) -> bool | int | float | str:
    """What TensorBoard's HPARAMS tab can show: numbers, booleans and text."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


class MetricsLogger:
    """One `log(scalars)` per iteration to JSONL and TensorBoard; needs `scalars["iteration"]`.

    `config` (plain data) is written as TensorBoard text and hyperparameters when the run is
    new, with `hparam_metrics` as the HPARAMS tab's metric columns; `start_env_steps` is the
    env-step count at the checkpoint a resumed run starts from.
    """

    def __init__(
        self,
        run_dir: str | Path,
        start_iteration: int = 0,
        *,
        start_env_steps: int = 0,
        config: Mapping[str, Any] | None = None,
        hparam_metrics: tuple[str, ...] = (),
        tracking: str = "tensorboard",
    ) -> None:
        check_tracking(tracking)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        truncate_metrics(self.path, start_iteration)
        self._file = self.path.open("a")
        # purge_step makes TensorBoard drop points a stopped run wrote past its last checkpoint.
        resumed = start_iteration > 0
        self._writer = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR),
            purge_step=start_iteration if resumed else None,
            flush_secs=10,
        )
        self._by_env_steps = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR / BY_ENV_STEPS),
            purge_step=start_env_steps if resumed else None,
            flush_secs=10,
        )
        if config is not None and not resumed:
            self._write_config(config, hparam_metrics)
        self._wandb = _start_wandb(run_dir, config) if tracking == "wandb" else None

    def _write_config(self, config: Mapping[str, Any], hparam_metrics: tuple[str, ...]) -> None:
        import yaml
        from tensorboardX.summary import hparams

        text = yaml.safe_dump(dict(config), sort_keys=False)
        # Indented four spaces: TensorBoard renders text as markdown, this as a code block.
        self._writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()), 0)
        flat = {key: _hparam(value) for key, value in flatten(config).items()}
        # The summaries add_hparams writes, but into this run rather than a new subdirectory,
        # so the HPARAMS tab reads the metric columns from this run's own scalars.
        file_writer = self._writer._get_file_writer()
        for summary in hparams(flat, dict.fromkeys(hparam_metrics, 0.0)):
            file_writer.add_summary(summary)

    def log(self, scalars: dict[str, Any]) -> dict[str, Any]:
        """Write one iteration's scalars; returns them as written (plain numbers)."""
        if "iteration" not in scalars:
            raise KeyError("metrics row needs an 'iteration' entry")
        row = {key: _plain(value) for key, value in scalars.items()}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({key: value for key, value in row.items() if value is not None})
        step = int(row["iteration"])
        env_steps = row.get("env_steps")
        for key, value in row.items():
            if key != "iteration" and value is not None:
                self._writer.add_scalar(key, value, step)
                if env_steps is not None:
                    self._by_env_steps.add_scalar(f"{BY_ENV_STEPS}/{key}", value, int(env_steps))
        return row

    def close(self) -> None:
        self._file.close()
        self._writer.close()
        self._by_env_steps.close()
        if self._wandb is not None:
            # The TensorBoard files too, under the W&B run's files (uploaded when it syncs).
            for pattern in ("events.*", f"{BY_ENV_STEPS}/events.*"):
                self._wandb.save(str(Path(self._writer.logdir) / pattern),
                                 base_path=str(Path(self._writer.logdir).parent), policy="end")
            self._wandb.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_wandb(run_dir: Path, config: Mapping[str, Any] | None) -> Any:
    """A Weights & Biases run of this run; a resumed run continues the same W&B run (its id is
    kept in the run directory). Its charts use `iteration` as their x-axis (env_steps is a
    choice in the UI)."""
    import wandb

    id_file = run_dir / WANDB_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(4)  # W&B run ids: short, lowercase alphanumeric
        id_file.write_text(run_id + "\n")
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "rlmeta"),
        name=run_dir.name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        config=dict(config or {}),
    )
    run.define_metric("iteration")
    run.define_metric("*", step_metric="iteration")
    return run


class Progress:
    """Progress on stderr (or `file`): on a terminal a tqdm bar with the iteration, ETA and the
    latest `show_keys`; elsewhere one plain line every `every` iterations and at the last.
    `enabled`: True forces the bar, False silences both, None (default) picks by terminal."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        show_keys: tuple[str, ...] = (),
        file: TextIO | None = None,
        enabled: bool | None = None,
        every: int = 10,
    ) -> None:
        if every < 1:
            raise ValueError(f"progress line interval must be >= 1, got {every}")
        self.show_keys, self.total, self.every = show_keys, total, every
        self.file = file or sys.stderr
        self.done = initial
        self._initial, self._start = initial, time.monotonic()
        terminal = bool(getattr(self.file, "isatty", lambda: False)())
        self._plain = enabled is None and not terminal
        self._bar = None
        if enabled or (enabled is None and terminal):
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc="train",
                unit="it",
                file=self.file,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def _shown(self, row: dict[str, Any]) -> dict[str, str]:
        return {
            key.split("/", 1)[-1]: f"{row[key]:.3g}"
            for key in self.show_keys
            if row.get(key) is not None
        }

    def update(self, row: dict[str, Any]) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix(self._shown(row), refresh=False)
            self._bar.update(1)
            self._bar.refresh()
        elif self._plain and (self.done % self.every == 0 or self.done == self.total):
            self.file.write(self.line(row) + "\n")
            self.file.flush()

    def line(self, row: dict[str, Any]) -> str:
        """E.g. `train 20/100 (20%) 12,000 env steps 3.1 s/it ETA 4m08s | step_0=-50.2`."""
        elapsed = time.monotonic() - self._start
        per_it = elapsed / max(self.done - self._initial, 1)
        remaining = per_it * max(self.total - self.done, 0)
        parts = [f"train {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%)"]
        if row.get("env_steps") is not None:
            parts.append(f"{int(row['env_steps']):,} env steps")
        parts.append(f"{per_it:.3g} s/it ETA {_duration(remaining)}")
        shown = " ".join(f"{key}={value}" for key, value in self._shown(row).items())
        return " ".join(parts) + (f" | {shown}" if shown else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
