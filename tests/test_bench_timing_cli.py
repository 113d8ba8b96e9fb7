"""The update-timing benchmarks' shared command line: cases, repeats, overrides, the command."""

from __future__ import annotations

import pytest

from benchmarks.timing_cli import parse_timing_args


def parse(*argv: str):
    return parse_timing_args(list(argv), "benchmarks.x", "x", ["a", "b"], "a,b", "case")


def test_overrides_are_collected_in_order_and_kept_in_the_command() -> None:
    args = parse("--cases", "b", "--set", "maml.fisher=adapted", "--set", "learners=2")
    assert args.cases == "b"
    assert args.overrides == ["maml.fisher=adapted", "learners=2"]
    assert args.command == ("python -m benchmarks.x --cases b --set maml.fisher=adapted "
                            "--set learners=2")
    assert parse().overrides == []


@pytest.mark.parametrize("argv", [("--cases", "c"), ("--repeats", "0"), ("--end-to-end", "-1")])
def test_bad_arguments_exit_with_a_usage_error(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert "cases must be among a, b" in capsys.readouterr().err
