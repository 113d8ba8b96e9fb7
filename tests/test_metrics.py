"""Metrics: one flushed JSON line per iteration, the same scalars in TensorBoard, resume trims."""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboardX.proto import event_pb2

from rlmeta.metrics import (
    BY_ENV_STEPS,
    METRICS_FILE,
    TENSORBOARD_DIR,
    MetricsLogger,
    Progress,
    read_metrics,
)


def tensorboard_events(directory: Path) -> list[event_pb2.Event]:
    """Every event of the event files in `directory`: TFRecord framing around Event protos."""
    events = []
    for path in sorted(directory.glob("events.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            events.append(event_pb2.Event.FromString(record))
    return events


def tensorboard_scalars(run_dir: Path, run: str = "") -> list[tuple[str, int, float]]:
    """(tag, step, value) of the TensorBoard run `run` (a subdirectory; "" the main one)."""
    return [(value.tag, event.step, value.simple_value)
            for event in tensorboard_events(run_dir / TENSORBOARD_DIR / run)
            for value in event.summary.value if value.HasField("simple_value")]


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


def test_scalars_are_also_logged_against_env_steps_in_a_run_of_their_own(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path) as logger:
        for i in range(3):
            logger.log({"iteration": i, "return/step_1": -10.0 + i, "env_steps": 100 * (i + 1)})
    by_steps = tensorboard_scalars(tmp_path, BY_ENV_STEPS)
    assert (f"{BY_ENV_STEPS}/return/step_1", 300, -8.0) in by_steps
    assert all(tag.startswith(f"{BY_ENV_STEPS}/") for tag, _, _ in by_steps)
    assert not any(tag.startswith(BY_ENV_STEPS) for tag, _, _ in tensorboard_scalars(tmp_path))
    # A resume from the checkpoint at iteration 2 (200 env steps) purges each run on its own axis.
    MetricsLogger(tmp_path, start_iteration=2, start_env_steps=200).close()
    starts = [(run, event.step)
              for run in ("", BY_ENV_STEPS)
              for event in tensorboard_events(tmp_path / TENSORBOARD_DIR / run)
              if event.HasField("session_log")
              and event.session_log.status == event_pb2.SessionLog.START]
    assert starts == [("", 2), (BY_ENV_STEPS, 200)]


def test_a_new_run_writes_its_config_as_text_and_hyperparameters(tmp_path: Path) -> None:
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    config = {"algorithm": "maml", "seed": 3, "maml": {"inner_lr": 0.1, "outer": "trpo"},
              "policy": {"hidden_sizes": [64, 64]}, "init_from": None}
    with MetricsLogger(tmp_path, config=config, hparam_metrics=("return/step_1",)) as logger:
        logger.log({"iteration": 0, "return/step_1": -1.0})
    values = {value.tag: value for event in tensorboard_events(tmp_path / TENSORBOARD_DIR)
              for value in event.summary.value}
    text = values["config/text_summary"].tensor.string_val[0].decode()
    assert "    maml:\n      inner_lr: 0.1\n" in text
    start = HParamsPluginData.FromString(
        values["_hparams_/session_start_info"].metadata.plugin_data.content
    ).session_start_info.hparams
    assert start["maml.inner_lr"].number_value == 0.1
    assert start["maml.outer"].string_value == "trpo"
    assert start["policy.hidden_sizes"].string_value == "[64, 64]"
    experiment = HParamsPluginData.FromString(
        values["_hparams_/experiment"].metadata.plugin_data.content
    ).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["return/step_1"]
    # Resuming does not write them again. (Event file names carry the second they were opened.)
    time.sleep(1.1)
    MetricsLogger(tmp_path, start_iteration=1, config=config).close()
    texts = [value.tag for event in tensorboard_events(tmp_path / TENSORBOARD_DIR)
             for value in event.summary.value if value.tag == "config/text_summary"]
    assert len(texts) == 1 and len(list((tmp_path / TENSORBOARD_DIR).glob("events.*"))) == 2


def test_without_a_terminal_progress_is_a_plain_line_every_n_iterations() -> None:
    stream = io.StringIO()  # not a TTY, as under nohup or a cluster job
    progress = Progress(total=5, show_keys=("return/step_1",), file=stream, every=2)
    for i in range(5):
        progress.update({"iteration": i, "env_steps": 1000 * (i + 1), "return/step_1": -9.5})
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["train 2/5", "train 4/5", "train 5/5"]
    assert "2,000 env steps" in lines[0] and "ETA" in lines[0] and "step_1=-9.5" in lines[0]
    assert "\r" not in stream.getvalue()  # no bar redraws in a log file
    silent = io.StringIO()
    quiet = Progress(total=5, file=silent, enabled=False, every=1)
    quiet.update({"iteration": 0})
    assert silent.getvalue() == ""


def wandb_records(path: Path) -> list:
    """The records of a W&B `.wandb` file: a 7-byte header, then LevelDB log framing (32 KiB
    blocks; each chunk a 7-byte header: checksum, length, type 1 full / 2-4 first, middle,
    last) around `Record` protos."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, offset, chunks, records = 32768, 7, b"", []
    while offset + 7 <= len(data):
        left = block - offset % block
        if left < 7:  # a block's tail too short for a header is padding
            offset += left
            continue
        length = int.from_bytes(data[offset + 4 : offset + 6], "little")
        kind = data[offset + 6]
        chunks += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(chunks))
            chunks = b""
    return records


def test_wandb_tracking_gets_the_rows_and_the_tensorboard_files_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = {"seed": 0, "maml": {"inner_lr": 0.1}}
    with MetricsLogger(tmp_path, config=config, tracking="wandb") as logger:
        for i in range(3):
            logger.log({"iteration": i, "return/step_1": -10.0 + i, "env_steps": 100 * (i + 1)})
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    # W&B's service process writes the file after finish() returns: wait for its exit record.
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_file)):
        assert time.monotonic() < deadline, "the W&B run file never got its exit record"
        time.sleep(0.2)
    records = wandb_records(run_file)
    history = [{item.key or "/".join(item.nested_key): item.value_json
                for item in record.history.item}
               for record in records if record.WhichOneof("record_type") == "history"]
    synced = [(row["iteration"], row["env_steps"], float(row["return/step_1"]))
              for row in history if "return/step_1" in row]
    assert synced == [("0", "100", -10.0), ("1", "200", -9.0), ("2", "300", -8.0)]
    files = run_file.parent / "files" / TENSORBOARD_DIR
    assert list(files.glob("events.*")) and list(files.glob(f"{BY_ENV_STEPS}/events.*"))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert any(item.key == "maml" and "inner_lr" in item.value_json for item in run.config.update)
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    assert run_file.name == f"run-{run_id}.wandb"


def test_wandb_tracking_without_the_package_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ValueError, match=r"tracking: wandb needs the wandb package.*\[wandb\]"):
        MetricsLogger(tmp_path / "run", tracking="wandb")
    assert not (tmp_path / "run").exists()
