"""The Meta-World curve benchmark reads meta-train and meta-test success out of a run's log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.metaworld_curve import main, markdown, running_mean, success_summary


def rows() -> list[dict]:
    out = []
    for iteration in range(4):
        row = {"iteration": iteration, "env_steps": 50_000 * (iteration + 1), "time_s": 1.0,
               "success/episode_0": 0.1 * iteration, "success/episode_1": 0.2 * iteration,
               "return/trial": 10.0, "kl": 0.01}
        if iteration % 2 == 1:
            row.update({"eval/success/episode_0": 0.5, "eval/success/episode_1": 0.7})
        out.append(row)
    return out


def test_success_summary_takes_first_last_and_mean_of_the_steps_or_episodes() -> None:
    row = {"success/step_0": 0.2, "success/step_1": 0.6, "eval/success/step_0": 0.0,
           "eval/success/step_1": 1.0, "return/step_0": 5.0}
    assert success_summary(row) == (0.2, 0.6, 0.4)
    assert success_summary(row, "eval/") == (0.0, 1.0, 0.5)
    assert success_summary({"return/step_0": 5.0}) is None


def test_markdown_means_meta_train_success_by_window_beside_each_evaluation() -> None:
    table = markdown(rows(), window=2).splitlines()
    assert len(table) == 4
    assert table[2] == "| 0–1 | 0.1M | 0.05 / 0.10 / 0.08 | 1: 0.50 / 0.70 / 0.60 |"
    assert table[3] == "| 2–3 | 0.2M | 0.25 / 0.50 / 0.38 | 3: 0.50 / 0.70 / 0.60 |"


def test_main_writes_the_curve_without_unrelated_columns(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows()))
    main([str(run), "--stem", "mw", "--window", "4", "--out", str(tmp_path / "out")])
    curve = json.loads((tmp_path / "out" / "mw_curve.json").read_text())
    assert [row["iteration"] for row in curve] == [0, 1, 2, 3]
    assert "kl" not in curve[0] and curve[1]["eval/success/episode_1"] == 0.7
    assert "| 0–3 | 0.2M |" in capsys.readouterr().out


def test_running_mean_covers_the_window_before_each_value() -> None:
    assert np.allclose(running_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    assert np.allclose(running_mean(np.array([2.0, 4.0]), 5), [2.0, 3.0])


def test_plot_writes_a_png_with_the_reference_lines(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows()))
    main([str(run), "--stem", "mw", "--window", "2", "--out", str(tmp_path),
          "--plot", "--reference", "paper meta-test=0.358"])
    assert (tmp_path / "mw_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reference_outside_zero_to_one_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps(rows()[0]) + "\n")
    with pytest.raises(SystemExit):
        main([str(run), "--stem", "mw", "--out", str(tmp_path), "--reference", "paper=35.8"])
    assert "expected LABEL=VALUE with VALUE a success rate in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "mw_curve.json").exists()
