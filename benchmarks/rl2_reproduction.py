"""Did a re-run of an RL² table row retrace the table's row? Compares an `rlmeta train` run of
the row's experiment file with the row in the table, update by update:

    rlmeta train experiments/rl2_bandit_k5_n10.yaml --run-dir runs/rerun/bandit-10-5
    python -m benchmarks.rl2_reproduction runs/rerun/bandit-10-5

Training is deterministic given the config (one torch thread; tasks, env seeds and each sampling
call's RNG drawn from the run's seed), so on the same torch build and CPU a re-run logs exactly
the stored training curve. A re-run stopped early (`rlmeta train --stop-after N`, or a run still
going) is checked on the updates it reached: the first minutes of a ten-hour row already show
whether it is on the stored path. (Keep the file's `iterations`: it sets the length of the
learning-rate schedule, so a shorter run leaves the path at the second update.) A staged row's
re-run must start from a policy with the stored start's weights, i.e. from re-runs of the stages
before that reproduced them. Floating-point results differ across CPUs and torch builds; then the
report names the first logged update whose figures differ. The shipped rows were trained by this
package's earlier loop, which `rlmeta train` of their files retraces draw for draw on one build;
their figures came from an earlier torch build, though: a re-run of bandit-10-5 agrees with its
row to about 1e-7 at update 10 and departs visibly by update 50, as the earlier loop does on the
current build too. The held-out figure is `benchmarks.rl2_tables --evaluate`'s to measure.
Trains and writes nothing; exits 1 if any run differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.rl2_tables import load_policy
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
    """Whether two rows' training started from different policies (`init_from`; None for a
    fresh start): by row, steps and weights digest, where both record it."""
    if stored is None or rerun is None:
        return stored is not rerun
    shared = {"row", "env_steps", "weights_sha256"} & stored.keys() & rerun.keys()
    return any(stored[key] != rerun[key] for key in shared)


def load_rows(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / "rl2_tables.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found; expected the table's rl2_tables.json")
    return {row["row"]: row for row in json.loads(path.read_text())["rows"]}


def rerun_row(run: Path) -> dict[str, Any]:
    """What of an `rlmeta train` run (its directory or a checkpoint) a table row records of its
    training: the row, settings, start, env steps and the curve read from its metrics log."""
    row, trained, _ = load_policy(run)
    config = trained.config
    return {"row": row.name, "rl2_env_steps": trained.env_steps, "rl2_curve": trained.curve,
            "rl2_init_from": trained.init_from,
            "rl2_settings": {"seed": config.seed, "policy": config.policy.model_dump(),
                             "rl2": config.rl2.model_dump()}}


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
    """What of `stored` the `rerun` (`rerun_row`) of the same row retraced, as plain data."""
    if not stored["rl2_trained"]:
        raise ValueError(f"row {stored['row']}: the table holds no trained policy to compare with")
    settings_differ = differing_settings(stored["rl2_settings"], rerun["rl2_settings"])
    if starting_policies_differ(stored.get("rl2_init_from"), rerun.get("rl2_init_from")):
        settings_differ.append("init_from")
    agreeing, difference = first_curve_difference(stored["rl2_curve"], rerun["rl2_curve"])
    return {
        "row": stored["row"],
        "settings_differ": settings_differ,
        "env_steps": {"stored": stored["rl2_env_steps"], "rerun": rerun["rl2_env_steps"]},
        "curve_points_agreeing": agreeing,
        "first_difference": difference,
        "reproduced": not settings_differ and difference is None and agreeing > 0,
        "complete": rerun["rl2_env_steps"] == stored["rl2_env_steps"],
    }


def describe(report: dict[str, Any]) -> str:
    steps = report["env_steps"]
    if report["settings_differ"]:
        return (f"{report['row']}: not comparable: the re-run's RL² settings differ from the "
                f"table's in {', '.join(report['settings_differ'])}")
    if report["first_difference"] is not None:
        difference = report["first_difference"]
        return (f"{report['row']}: differs: the training curve agrees at "
                f"{report['curve_points_agreeing']} logged updates, then at update "
                f"{difference['updates']} stored {difference['stored']} against re-run "
                f"{difference['rerun']}")
    if report["curve_points_agreeing"] == 0:
        return f"{report['row']}: not comparable: the re-run logged no update the table logged"
    curve = f"training curve identical at all {report['curve_points_agreeing']} logged updates"
    if not report["complete"]:
        return (f"{report['row']}: on the stored path so far: {steps['rerun']:,} of "
                f"{steps['stored']:,} env steps, {curve} it reached")
    return f"{report['row']}: reproduced exactly: {steps['rerun']:,} env steps, {curve}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                        help="`rlmeta train` runs of table rows (a directory or a checkpoint)")
    parser.add_argument("--table", type=Path, default=Path(__file__).parent / "results",
                        metavar="DIR", help="the table's directory (default: %(default)s)")
    args = parser.parse_args(argv)
    table = load_rows(args.table)
    reruns = [rerun_row(run) for run in args.runs]
    missing = sorted({rerun["row"] for rerun in reruns} - set(table))
    if missing:
        raise SystemExit(f"rows {missing} of {[str(r) for r in args.runs]} are not in the table "
                         f"at {args.table}; expected rows the table holds: {sorted(table)}")
    reports = [compare_row(table[rerun["row"]], rerun) for rerun in reruns]
    for report in reports:
        print(describe(report))
    return 0 if all(r["reproduced"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
