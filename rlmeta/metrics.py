"""What a training run writes and shows: `metrics.jsonl`, TensorBoard scalars and a progress bar.

Each iteration is one JSON line (flushed as written, so a crash loses nothing already logged)
and the same scalars in TensorBoard event files under `<run_dir>/tensorboard`. On resume, lines
and TensorBoard points from iterations after the checkpoint are discarded so the logs read as one
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from tensorboardX import SummaryWriter
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


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


class MetricsLogger:
    """One `log(scalars)` per iteration to JSONL and TensorBoard; needs `scalars["iteration"]`."""

    def __init__(self, run_dir: str | Path, start_iteration: int = 0) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        truncate_metrics(self.path, start_iteration)
        self._file = self.path.open("a")
        # purge_step makes TensorBoard drop points a stopped run wrote past its last checkpoint.
        self._writer = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR),
            purge_step=start_iteration if start_iteration > 0 else None,
            flush_secs=10,
        )

    def log(self, scalars: dict[str, Any]) -> dict[str, Any]:
        """Write one iteration's scalars; returns them as written (plain numbers)."""
        if "iteration" not in scalars:
            raise KeyError("metrics row needs an 'iteration' entry")
        row = {key: _plain(value) for key, value in scalars.items()}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        step = int(row["iteration"])
        for key, value in row.items():
            if key != "iteration" and value is not None:
                self._writer.add_scalar(key, value, step)
        return row

    def close(self) -> None:
        self._file.close()
        self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    """A tqdm bar on stderr: iteration, ETA and the latest returns; silent when not a TTY."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        show_keys: tuple[str, ...] = (),
        file: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.show_keys = show_keys
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc="train",
            unit="it",
            file=file or sys.stderr,
            disable=None if enabled is None else not enabled,  # None: off when not a terminal
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def update(self, row: dict[str, Any]) -> None:
        shown = {
            key.split("/", 1)[-1]: f"{row[key]:.3g}"
            for key in self.show_keys
            if row.get(key) is not None
        }
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(1)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
