"""benchmarks/rl2_reproduction.py: a re-run of a table row is checked against the stored row, point
by point, and any difference is named by the update where it starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import rl2_reproduction
from benchmarks.rl2_tables import main as rl2_tables

ROW = "bandit-10-5"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tiny row command run twice, into two directories."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("table", "rerun"):
        rl2_tables(["--budget", "3000", "--hidden-size", "8", "--only", ROW, "--log-every", "1",
                    "--tasks", "4", "--eval-batch", "2", "--out", str(root / name),
                    "--save-dir", str(root / name)])
    return root / "table", root / "rerun"


def edited(directory: Path, tmp_path: Path, edit) -> Path:
    """A copy of `directory`'s rl2_tables.json with `edit` applied to its row."""
    data = json.loads((directory / "rl2_tables.json").read_text())
    edit(data["rows"][0])
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "rl2_tables.json").write_text(json.dumps(data))
    return tmp_path


def check(rerun: Path, table: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = rl2_reproduction.main([str(rerun), "--table", str(table)])
    return code, capsys.readouterr().out


def test_the_same_command_reproduces_the_row_exactly(two_runs, capsys) -> None:
    table, rerun = two_runs
    code, out = check(rerun, table, capsys)
    assert code == 0
    assert out.startswith(f"{ROW}: reproduced exactly: ")
    assert "identical at all 3 logged updates" in out


def test_a_difference_is_named_by_the_first_update_where_it_starts(
    two_runs, capsys, tmp_path: Path
) -> None:
    table, rerun = two_runs

    def perturb(row: dict) -> None:
        row["rl2_curve"][1]["entropy"] += 1e-9
        row["rl2_curve"][2]["return/trial"] += 1.0

    code, out = check(edited(rerun, tmp_path, perturb), table, capsys)
    assert code == 1
    assert "agrees at 1 logged updates, then at update 2" in out
    assert "'entropy'" in out and "return/trial" not in out


def test_wall_time_is_not_a_difference(two_runs, capsys, tmp_path: Path) -> None:
    table, rerun = two_runs

    def slower(row: dict) -> None:
        for point in row["rl2_curve"]:
            point["seconds"] *= 3

    code, out = check(edited(rerun, tmp_path, slower), table, capsys)
    assert code == 0, out


def test_a_rerun_stopped_early_is_checked_on_the_updates_it_reached(
    two_runs, capsys, tmp_path: Path
) -> None:
    table, rerun = two_runs

    def stopped(row: dict) -> None:
        row["rl2_curve"] = row["rl2_curve"][:2]
        row["rl2_env_steps"] = row["rl2_curve"][-1]["env_steps"]
        row["measured"]["rl2"]["mean"] -= 0.5  # an earlier policy measures differently

    code, out = check(edited(rerun, tmp_path, stopped), table, capsys)
    assert code == 0
    assert "on the stored path so far: stopped at" in out
    assert "identical at all 2 logged updates" in out


def test_a_changed_held_out_figure_after_an_identical_run_is_reported(
    two_runs, capsys, tmp_path: Path
) -> None:
    table, rerun = two_runs

    def measured_otherwise(row: dict) -> None:
        row["measured"]["rl2"]["mean"] += 0.25

    code, out = check(edited(rerun, tmp_path, measured_otherwise), table, capsys)
    assert code == 1
    assert "identical at all 3 logged updates, but held-out" in out


def test_other_settings_are_not_comparable(two_runs, capsys, tmp_path: Path) -> None:
    table, rerun = two_runs

    def reseeded(row: dict) -> None:
        row["rl2_settings"]["seed"] = 7

    code, out = check(edited(rerun, tmp_path, reseeded), table, capsys)
    assert code == 1
    assert out.strip().endswith("not comparable: the re-run's RL² settings differ from the "
                                "table's in seed")

    def other_cell(row: dict) -> None:
        row["rl2_settings"]["rl2"]["recurrent_cell"] = "layer_norm_gru"
        row["rl2_settings"]["policy"]["made_up"] = 1

    code, out = check(edited(rerun, tmp_path / "cell", other_cell), table, capsys)
    assert code == 1
    assert out.strip().endswith("in policy.made_up, rl2.recurrent_cell")


def test_a_setting_added_since_the_row_was_trained_counts_as_its_default(
    two_runs, capsys, tmp_path: Path
) -> None:
    # Rows trained before rl2.recurrent_cell existed do not record it; they ran torch's GRU, the
    # default, so a re-run with today's code (which records "gru") is the same command.
    table, rerun = two_runs
    assert json.loads((rerun / "rl2_tables.json").read_text())["rows"][0]["rl2_settings"]["rl2"][
        "recurrent_cell"] == "gru"

    def recorded_before_the_setting(row: dict) -> None:
        del row["rl2_settings"]["rl2"]["recurrent_cell"]

    older = edited(table, tmp_path / "older", recorded_before_the_setting)
    code, out = check(rerun, older, capsys)
    assert code == 0, out

    def trained_with_the_other_cell(row: dict) -> None:
        row["rl2_settings"]["rl2"]["recurrent_cell"] = "layer_norm_gru"

    code, out = check(edited(rerun, tmp_path / "ln", trained_with_the_other_cell), older, capsys)
    assert code == 1
    assert out.strip().endswith("in rl2.recurrent_cell")


def test_a_rerun_started_from_other_weights_is_not_comparable(
    two_runs, capsys, tmp_path: Path
) -> None:
    # Two seeds of mdp-10 have the same step count, so the starting policy is named by its weights.
    table, rerun = two_runs

    def started_from(digest: str):
        def edit(row: dict) -> None:
            row["rl2_init_from"] = {"checkpoint": "runs/rl2_tables/mdp-10.pt", "row": "mdp-10",
                                    "env_steps": 100, "weights_sha256": digest}
        return edit

    warm_table = edited(table, tmp_path / "table", started_from("a" * 64))
    code, out = check(edited(rerun, tmp_path / "same", started_from("a" * 64)), warm_table, capsys)
    assert code == 0, out
    code, out = check(edited(rerun, tmp_path / "other", started_from("b" * 64)), warm_table,
                      capsys)
    assert code == 1
    assert out.strip().endswith("in init_from")

    def recorded_before_digests(row: dict) -> None:
        started_from("a" * 64)(row)
        del row["rl2_init_from"]["weights_sha256"]

    code, out = check(edited(rerun, tmp_path / "older", recorded_before_digests), warm_table,
                      capsys)
    assert code == 0, out
    code, out = check(rerun, warm_table, capsys)  # trained from scratch
    assert code == 1
    assert out.strip().endswith("in init_from")


def test_a_row_the_table_lacks_or_a_missing_file_is_an_error(two_runs, tmp_path: Path) -> None:
    table, rerun = two_runs

    def renamed(row: dict) -> None:
        row["row"] = "mdp-10"

    with pytest.raises(SystemExit, match=r"rows \['mdp-10'\] .* not in the table"):
        rl2_reproduction.main([str(edited(rerun, tmp_path / "other", renamed)),
                               "--table", str(table)])
    with pytest.raises(SystemExit, match="rl2_tables.json not found"):
        rl2_reproduction.main([str(tmp_path / "empty"), "--table", str(table)])
