"""What the update-timing benchmarks share: their command line (which cases, repeats, end to
end) and how they write their report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def parse_timing_args(
    argv: list[str] | None,
    module: str,
    description: str,
    cases: Iterable[str],
    default: str,
    per: str,
) -> argparse.Namespace:
    """`--cases`, `--repeats` (timed updates per `per`), `--end-to-end N`, `--set KEY=VALUE`
    (config overrides for every case, as `rlmeta train --set`), `--out`, checked; the namespace
    also holds `command`, the line that reproduces the call."""
    names = list(cases)
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--cases", default=default,
                        help=f"comma-separated, from {', '.join(names)}")
    parser.add_argument("--repeats", type=int, default=3, help=f"timed updates per {per}")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N",
                        help=f"also train N iterations per {per} with 2 workers (0: skip)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a config override for every case "
                        "(repeatable), e.g. maml.fisher=adapted")
    parser.add_argument("--out", default="benchmarks/results", help="output directory")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in names]
    if unknown or args.repeats < 1 or args.end_to_end < 0:
        parser.error(f"cases must be among {', '.join(names)}, --repeats >= 1, "
                     f"--end-to-end >= 0 (got {args.cases!r}, {args.repeats}, {args.end_to_end})")
    given = sys.argv[1:] if argv is None else argv
    args.command = " ".join([parser.prog, *given])
    return args


def write_report(out: str | Path, stem: str, report: dict[str, Any], markdown: str) -> None:
    """`<out>/<stem>.json` and `<out>/<stem>.md`, and the table on stdout."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (folder / f"{stem}.md").write_text(markdown)
    print(markdown)
