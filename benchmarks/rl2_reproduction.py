"""Did a re-run of RL² table rows reproduce the table? Compares each row a re-run wrote (with
`benchmarks.rl2_tables --out RERUN`) with the same row in the table, point by point:

    python -m benchmarks.rl2_tables --config experiments/rl2_tabular_mdp_n10.yaml \
        --only mdp-10 --budget 110000000 --out runs/rerun
    python -m benchmarks.rl2_reproduction runs/rerun

Training is deterministic given the seed (one torch thread, tasks and env seeds drawn from the
row's seed), so on the same torch build and CPU a re-run logs exactly the stored training curve
and measures exactly the stored held-out figure. A re-run stopped early with `--max-minutes` is
checked on the updates it reached: the first minutes of a ten-hour row already show whether it
is on the stored path. (Keep the row's `--budget`: it sets the length of the learning-rate
schedule, so a smaller budget leaves the path at the second update.) Floating-point results
may differ across CPUs and torch builds; then the report names the first update whose logged
figures differ. Trains and writes nothing; exits 1 if any row differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlmeta.config import PolicyConfig
from rlmeta.rl2.config import RL2Config

# Wall time depends on the machine and what else it runs; everything else a curve point holds is
# computed from the seed.
TIMING_KEYS = frozenset({"seconds"})

# A row records its settings as they were when it was trained; a setting added since (say
# rl2.recurrent_cell) is absent from it and stood at its default.
SETTING_DEFAULTS = {"policy": PolicyConfig().model_dump(), "rl2": RL2Config().model_dump()}


def differing_settings(stored: dict[str, Any], rerun: dict[str, Any]) -> list[str]:
    """The settings (as `section.key`) on which two rows' `rl2_settings` differ, a setting one
    of them lacks counting as its default."""
    differing = []
    for section in sorted(stored.keys() | rerun.keys()):
        before, now = stored.get(section), rerun.get(section)
        if not (isinstance(before, dict) and isinstance(now, dict)):
            if before != now:
                differing.append(section)
            continue
        defaults = SETTING_DEFAULTS.get(section, {})
        for key in sorted(before.keys() | now.keys()):
            default = defaults.get(key)
            unknown = key not in defaults and not (key in before and key in now)
            if unknown or before.get(key, default) != now.get(key, default):
                differing.append(f"{section}.{key}")
    return differing


def starting_policies_differ(stored: dict | None, rerun: dict | None) -> bool:
    """Whether two rows' training started from different saved policies (`--init-from`; None
    for a fresh start): by row, steps and weights digest, where both record it."""
    if stored is None or rerun is None:
        return stored is not rerun
    shared = {"row", "env_steps", "weights_sha256"} & stored.keys() & rerun.keys()
    return any(stored[key] != rerun[key] for key in shared)


def load_rows(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / "rl2_tables.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found; expected the rl2_tables.json a run wrote with --out")
    return {row["row"]: row for row in json.loads(path.read_text())["rows"]}


def first_curve_difference(
    stored: list[dict[str, Any]], rerun: list[dict[str, Any]]
) -> tuple[int, dict[str, Any] | None]:
    """How many of the updates logged by both runs agree, and the first one that does not
    (with both runs' figures), or None."""
    by_update = {point["updates"]: point for point in stored}
    agreeing = 0
    for point in rerun:
        before = by_update.get(point["updates"])
        if before is None:
            continue
        differing = sorted(
            key for key in (before.keys() | point.keys()) - TIMING_KEYS
            if before.get(key) != point.get(key)
        )
        if differing:
            return agreeing, {"updates": point["updates"],
                              "stored": {k: before.get(k) for k in differing},
                              "rerun": {k: point.get(k) for k in differing}}
        agreeing += 1
    return agreeing, None


def compare_row(stored: dict[str, Any], rerun: dict[str, Any]) -> dict[str, Any]:
    """What of `stored` the `rerun` of the same row reproduced, as plain data."""
    if not rerun["rl2_trained"]:
        raise ValueError(f"row {rerun['row']}: the re-run trained no policy; expected one "
                         f"trained with the row's command")
    if not stored["rl2_trained"]:
        raise ValueError(f"row {stored['row']}: the table holds no trained policy to compare with")
    settings_differ = differing_settings(stored["rl2_settings"], rerun["rl2_settings"])
    if starting_policies_differ(stored.get("rl2_init_from"), rerun.get("rl2_init_from")):
        settings_differ.append("init_from")
    agreeing, difference = first_curve_difference(stored["rl2_curve"], rerun["rl2_curve"])
    complete = rerun["rl2_env_steps"] == stored["rl2_env_steps"]
    held_out_equal = complete and stored["measured"]["rl2"] == rerun["measured"]["rl2"]
    return {
        "row": stored["row"],
        "settings_differ": settings_differ,
        "env_steps": {"stored": stored["rl2_env_steps"], "rerun": rerun["rl2_env_steps"]},
        "curve_points_agreeing": agreeing,
        "first_difference": difference,
        "held_out": {"stored": stored["measured"]["rl2"]["mean"],
                     "rerun": rerun["measured"]["rl2"]["mean"]},
        "reproduced": not settings_differ and difference is None and agreeing > 0
        and (held_out_equal or not complete),
        "complete": complete,
    }


def describe(report: dict[str, Any]) -> str:
    steps = report["env_steps"]
    held_out = report["held_out"]
    if report["settings_differ"]:
        return (f"{report['row']}: not comparable: the re-run's RL² settings differ from the "
                f"table's in {', '.join(report['settings_differ'])}")
    if report["first_difference"] is not None:
        difference = report["first_difference"]
        return (f"{report['row']}: differs: the training curve agrees at "
                f"{report['curve_points_agreeing']} logged updates, then at update "
                f"{difference['updates']} stored {difference['stored']} against re-run "
                f"{difference['rerun']}; held-out {held_out['rerun']:.4f} against "
                f"{held_out['stored']:.4f} stored")
    if report["curve_points_agreeing"] == 0:
        return f"{report['row']}: not comparable: the re-run logged no update the table logged"
    curve = f"training curve identical at all {report['curve_points_agreeing']} logged updates"
    if not report["complete"]:
        return (f"{report['row']}: on the stored path so far: stopped at {steps['rerun']:,} of "
                f"{steps['stored']:,} env steps, {curve} it reached")
    if report["reproduced"]:
        return (f"{report['row']}: reproduced exactly: {steps['rerun']:,} env steps, {curve}, "
                f"held-out {held_out['rerun']:.4f} as stored")
    return (f"{report['row']}: differs: {curve}, but held-out {held_out['rerun']:.4f} against "
            f"{held_out['stored']:.4f} stored (evaluation settings or code changed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rerun", type=Path, metavar="RERUN_DIR",
                        help="the --out directory of the re-run")
    parser.add_argument("--table", type=Path, default=Path(__file__).parent / "results",
                        metavar="DIR", help="the table's directory (default: %(default)s)")
    args = parser.parse_args(argv)
    table, rerun = load_rows(args.table), load_rows(args.rerun)
    missing = sorted(set(rerun) - set(table))
    if missing:
        raise SystemExit(f"rows {missing} of {args.rerun} are not in the table at {args.table}; "
                         f"expected rows the table holds: {sorted(table)}")
    reports = [compare_row(table[name], rerun[name]) for name in rerun]
    for report in reports:
        print(describe(report))
    return 0 if all(r["reproduced"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
