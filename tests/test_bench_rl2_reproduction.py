"""benchmarks/rl2_reproduction.py: an `rlmeta train` re-run of a table row is checked against the
stored row, logged update by logged update, and any difference is named by the update where it
starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import rl2_reproduction
from benchmarks.rl2_tables import main as rl2_tables
from rlmeta.run import cli

ROW = "bandit-10-5"
EXPERIMENT = str(Path(__file__).resolve().parents[1] / "experiments" / "rl2_bandit_k5_n10.yaml")
# The row's file at a size that trains 30 updates in seconds: 3 logged curve points.
TINY = ["--set", "iterations=30", "--set", "rl2.hidden_size=8", "--set", "rl2.meta_batch_size=2",
        "--set", "envs_per_worker=8", "--set", "checkpoint_every=10"]


def rlmeta_train(run_dir: Path, *args: str) -> Path:
    assert cli.main(["train", EXPERIMENT, *TINY, *args, "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A row trained and measured into a table, and a re-run of its command."""
    root = tmp_path_factory.mktemp("runs")
    rl2_tables(["--evaluate", str(rlmeta_train(root / "row")), "--tasks", "4",
                "--eval-batch", "2", "--out", str(root / "table")])
    return root / "table", rlmeta_train(root / "rerun")


def edited(table: Path, tmp_path: Path, edit) -> Path:
    """A copy of `table`'s rl2_tables.json with `edit` applied to its row."""
    data = json.loads((table / "rl2_tables.json").read_text())
    edit(data["rows"][0])
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "rl2_tables.json").write_text(json.dumps(data))
    return tmp_path


def check(rerun: Path, table: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()  # what training printed
    code = rl2_reproduction.main([str(rerun), "--table", str(table)])
    return code, capsys.readouterr().out


def test_a_rerun_of_the_rows_file_reproduces_the_row_exactly(runs, capsys) -> None:
    table, rerun = runs
    code, out = check(rerun, table, capsys)
    assert code == 0
    assert out == f"{ROW}: reproduced exactly: 2,400 env steps, training curve identical at all " \
                  f"3 logged updates\n"


def test_a_difference_is_named_by_the_first_update_where_it_starts(
    runs, capsys, tmp_path: Path
) -> None:
    table, rerun = runs

    def perturb(row: dict) -> None:
        row["rl2_curve"][1]["entropy"] += 1e-9
        row["rl2_curve"][2]["return/trial"] += 1.0

    code, out = check(rerun, edited(table, tmp_path, perturb), capsys)
    assert code == 1
    assert "agrees at 1 logged updates, then at update 20" in out
    assert "'entropy'" in out and "return/trial" not in out


def test_wall_time_is_not_a_difference(runs, capsys, tmp_path: Path) -> None:
    table, rerun = runs

    def slower(row: dict) -> None:
        for point in row["rl2_curve"]:
            point["seconds"] *= 3

    code, out = check(rerun, edited(table, tmp_path, slower), capsys)
    assert code == 0, out


def test_a_rerun_stopped_early_is_checked_on_the_updates_it_reached(
    runs, capsys, tmp_path: Path
) -> None:
    table, _ = runs
    stopped = rlmeta_train(tmp_path / "stopped", "--stop-after", "20")
    code, out = check(stopped, table, capsys)
    assert code == 0
    assert out == f"{ROW}: on the stored path so far: 1,600 of 2,400 env steps, training curve " \
                  f"identical at all 2 logged updates it reached\n"


def test_other_settings_are_not_comparable(runs, capsys, tmp_path: Path) -> None:
    table, _ = runs
    reseeded = rlmeta_train(tmp_path / "reseeded", "--set", "seed=7", "--stop-after", "10")
    code, out = check(reseeded, table, capsys)
    assert code == 1
    assert out.strip().endswith("not comparable: the re-run's RL² settings differ from the "
                                "table's in seed")

    def other_cell(row: dict) -> None:
        row["rl2_settings"]["rl2"]["recurrent_cell"] = "layer_norm_gru"
        row["rl2_settings"]["policy"]["made_up"] = 1

    code, out = check(runs[1], edited(table, tmp_path / "cell", other_cell), capsys)
    assert code == 1
    assert out.strip().endswith("in policy.made_up, rl2.recurrent_cell")


def test_a_setting_added_since_the_row_was_trained_counts_as_its_default(
    runs, capsys, tmp_path: Path
) -> None:
    # Rows trained before rl2.recurrent_cell existed do not record it; they ran torch's GRU, the
    # default, so a re-run with today's code (which records "gru") is the same command.
    table, rerun = runs

    def recorded_before_the_setting(row: dict) -> None:
        del row["rl2_settings"]["rl2"]["recurrent_cell"]

    code, out = check(rerun, edited(table, tmp_path, recorded_before_the_setting), capsys)
    assert code == 0, out


def test_a_rerun_started_from_other_weights_is_not_comparable(
    runs, capsys, tmp_path: Path
) -> None:
    # Two seeds of mdp-10 have the same step count, so the starting policy is named by its weights.
    table, rerun = runs
    warm = rlmeta_train(tmp_path / "warm", "--init-from", str(rerun), "--stop-after", "10")
    record = rl2_reproduction.rerun_row(warm)["rl2_init_from"]
    assert (record["row"], record["env_steps"]) == (ROW, 2400)

    def started_from(digest: str):
        def edit(row: dict) -> None:
            row["rl2_init_from"] = {"checkpoint": "runs/rl2_tables/bandit-10-5_stage1.pt",
                                    "row": ROW, "env_steps": 2400, "weights_sha256": digest}
        return edit

    code, out = check(warm, edited(table, tmp_path / "same",
                                   started_from(record["weights_sha256"])), capsys)
    assert code == 1 and "init_from" not in out  # the same start; the curve differs, of course
    code, out = check(warm, edited(table, tmp_path / "other", started_from("b" * 64)), capsys)
    assert code == 1
    assert out.strip().endswith("in init_from")
    code, out = check(warm, table, capsys)  # the table's row was trained from scratch
    assert code == 1
    assert out.strip().endswith("in init_from")


def test_a_row_the_table_lacks_or_a_missing_table_is_an_error(runs, tmp_path: Path) -> None:
    table, rerun = runs

    def renamed(row: dict) -> None:
        row["row"] = "mdp-10"

    with pytest.raises(SystemExit, match=r"rows \['bandit-10-5'\] .* not in the table"):
        rl2_reproduction.main([str(rerun), "--table", str(edited(table, tmp_path, renamed))])
    with pytest.raises(SystemExit, match="rl2_tables.json not found"):
        rl2_reproduction.main([str(rerun), "--table", str(tmp_path / "empty")])
