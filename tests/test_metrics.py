"""Metrics: one flushed JSON line per iteration, the same scalars in TensorBoard, resume trims."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import torch
from tensorboardX.proto import event_pb2

from rlmeta.metrics import METRICS_FILE, TENSORBOARD_DIR, MetricsLogger, Progress, read_metrics


def tensorboard_scalars(run_dir: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) from every event file: TFRecord framing around Event protos."""
    found = []
    for path in sorted((run_dir / TENSORBOARD_DIR).glob("events.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                found.append((value.tag, event.step, value.simple_value))
    return found


def test_each_line_is_on_disk_as_soon_as_it_is_logged(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path)
    logger.log({"iteration": 0, "return/step_0": np.float32(-3.5), "kl": torch.tensor(0.01)})
    # Read while the logger is still open: a crash now would keep this line.
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert rows == [{"iteration": 0, "return/step_0": -3.5, "kl": rows[0]["kl"]}]
    assert abs(rows[0]["kl"] - 0.01) < 1e-6
    logger.log({"iteration": 1, "return/step_0": float("nan"), "accepted": True})
    assert read_metrics(tmp_path / METRICS_FILE)[1] == {
        "iteration": 1, "return/step_0": None, "accepted": 1
    }
    logger.close()


def test_tensorboard_gets_the_same_scalars(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path) as logger:
        for i in range(3):
            logger.log({"iteration": i, "return/step_1": -10.0 + i, "env_steps": 100 * (i + 1)})
    scalars = tensorboard_scalars(tmp_path)
    assert ("return/step_1", 2, -8.0) in scalars
    assert ("env_steps", 0, 100.0) in scalars
    assert not any(tag == "iteration" for tag, _, _ in scalars)


def test_resume_drops_lines_past_the_checkpoint_and_a_partial_line(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path) as logger:
        for i in range(5):
            logger.log({"iteration": i, "x": float(i)})
    with (tmp_path / METRICS_FILE).open("a") as file:
        file.write('{"iteration": 5, "x"')  # the line a crash cut short
    with MetricsLogger(tmp_path, start_iteration=3) as logger:
        logger.log({"iteration": 3, "x": 30.0})
    rows = read_metrics(tmp_path / METRICS_FILE)
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    assert rows[-1]["x"] == 30.0


def test_progress_shows_iteration_eta_and_latest_returns() -> None:
    stream = io.StringIO()
    progress = Progress(
        total=4, initial=1, show_keys=("return/step_0", "return/step_1"), file=stream, enabled=True
    )
    progress.update({"iteration": 1, "return/step_0": -12.345, "return/step_1": -9.0})
    progress.close()
    text = stream.getvalue()
    assert "2/4" in text
    assert "step_0=-12.3" in text and "step_1=-9" in text
    assert "<" in text  # tqdm's elapsed<remaining (ETA) field
