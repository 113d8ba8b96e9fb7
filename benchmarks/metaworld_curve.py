"""A Meta-World run's learning curve: meta-train and meta-test success against env steps.

    python -m benchmarks.metaworld_curve RUN_DIR --stem NAME [--window 10] [--out DIR]
        [--plot] [--reference "LABEL=VALUE" ...] [--title TEXT]

Reads the run's `metrics.jsonl`: meta-train success is logged every iteration (MAML
`success/step_k`, the fraction of a task's episodes sampled after k inner steps that
succeed, averaged over tasks; RL² `success/episode_k`, the fraction of trials whose episode k
succeeds), and
meta-test success wherever the run evaluated its held-out split while training (`eval_every`,
the same keys under `eval/`). Writes `<out>/<NAME>_curve.json` (those columns per iteration,
with env steps and wall time) and prints a markdown table: meta-train success by window of
`--window` iterations (mean over the window) beside each held-out evaluation in it. With
`--plot`, also `<out>/<NAME>_curve.png`: both successes against env steps, meta-train as a
running mean over the window, with each `--reference` (e.g. a paper's figure) as a dashed line.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rlmeta.metrics import METRICS_FILE, read_metrics

_SUCCESS = re.compile(r"(?:eval/)?success/(?:step|episode)_(\d+)")
_KEPT = re.compile(r"(?:eval/)?(?:success|return)/.*")


def curve_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per iteration: iteration, env steps, wall time and every success and return column."""
    return [{"iteration": row["iteration"], "env_steps": row["env_steps"],
             "time_s": row["time_s"],
             **{key: value for key, value in row.items() if _KEPT.fullmatch(key)}}
            for row in rows]


def success_summary(row: dict[str, Any], prefix: str = "") -> tuple[float, float, float] | None:
    """(first, last, mean) success over a row's steps or episodes under `prefix`; None if the
    row has none."""
    values = sorted((int(match[1]), value) for key, value in row.items()
                    if (match := _SUCCESS.fullmatch(key)) and key.startswith(prefix + "success/"))
    if not values:
        return None
    return values[0][1], values[-1][1], sum(value for _, value in values) / len(values)


def markdown(rows: list[dict[str, Any]], window: int) -> str:
    lines = ["| iterations | env steps (end) | meta-train success, first / last / mean | "
             "meta-test success at (iteration: first / last / mean) |",
             "| --- | --- | --- | --- |"]
    for start in range(0, len(rows), window):
        block = rows[start:start + window]
        train = [summary for row in block if (summary := success_summary(row)) is not None]
        if not train:
            continue
        means = [sum(column) / len(train) for column in zip(*train, strict=True)]
        tests = [f"{row['iteration']}: " + " / ".join(f"{value:.2f}" for value in summary)
                 for row in block if (summary := success_summary(row, "eval/")) is not None]
        lines.append(f"| {block[0]['iteration']}–{block[-1]['iteration']} | "
                     f"{block[-1]['env_steps'] / 1e6:.1f}M | "
                     + " / ".join(f"{value:.2f}" for value in means)
                     + f" | {'; '.join(tests) or '—'} |")
    return "\n".join(lines) + "\n"


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the up to `window - 1` before it."""
    sums = np.convolve(values, np.ones(window), "full")[:len(values)]
    return sums / np.minimum(np.arange(1, len(values) + 1), window)


def _mean_success_series(
    rows: list[dict[str, Any]], prefix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Env steps (millions) and mean success of the rows that log success under `prefix`."""
    points = [(row["env_steps"] / 1e6, summary[2]) for row in rows
              if (summary := success_summary(row, prefix)) is not None]
    if not points:
        return np.array([]), np.array([])
    steps, values = zip(*points, strict=True)
    return np.array(steps, dtype=float), np.array(values, dtype=float)


def plot(path: Path, rows: list[dict[str, Any]], window: int,
         references: list[tuple[str, float]], title: str) -> None:
    """Meta-train success (mean over a row's steps or episodes, running mean over `window`) and
    meta-test success at each held-out evaluation, against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    steps, values = _mean_success_series(rows)
    if len(values):
        axis.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
        axis.plot(steps, running_mean(values, window), color="tab:blue",
                  label=f"meta-train (running mean of {window} iterations)")
    steps, values = _mean_success_series(rows, "eval/")
    if len(values):
        axis.plot(steps, values, color="tab:orange", marker="o",
                  label="meta-test (held-out evaluations during training)")
    for (label, value), color in zip(references, ("tab:blue", "tab:orange", "gray", "black"),
                                     strict=False):
        axis.axhline(value, linestyle="--", linewidth=1, color=color, label=label)
    axis.set_xlabel("env steps (millions)")
    axis.set_ylabel("success rate (mean over steps or episodes)")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _reference(text: str) -> tuple[str, float]:
    label, sep, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not sep or not label or not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE with VALUE a success rate in "
                                         f"[0, 1], got {text!r}")
    return label, number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metaworld_curve",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--stem", required=True, help="output name, e.g. metaworld_ml10_rl2")
    parser.add_argument("--window", type=int, default=10, help="iterations per table row")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--plot", action="store_true", help="also write <stem>_curve.png")
    parser.add_argument("--reference", type=_reference, action="append", default=[],
                        metavar="LABEL=VALUE",
                        help="a dashed line on the plot, e.g. 'paper meta-test=0.316'")
    parser.add_argument("--title", help="the plot's title (default: the stem)")
    args = parser.parse_args(argv)
    metrics = args.run_dir / METRICS_FILE
    if args.window < 1 or not metrics.is_file():
        parser.error(f"--window must be >= 1 and {metrics} must exist (got {args.window})")
    rows = curve_rows(read_metrics(metrics))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}_curve.json").write_text(json.dumps(rows, indent=0) + "\n")
    if args.plot:
        plot(args.out / f"{args.stem}_curve.png", rows, args.window, args.reference,
             args.title or args.stem)
    print(markdown(rows, args.window), end="")


if __name__ == "__main__":
    main()
