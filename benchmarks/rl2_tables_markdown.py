"""The RL² tables' markdown: `benchmarks.rl2_tables` measures the rows, this renders them.

Reads only the plain data each row's measurement produced (`rl2_tables.json`'s rows): the
markdown is a function of the JSON, which is what merged runs and `--evaluate` rewrite. Renders
DIR/rl2_tables.json into DIR/rl2_tables.md (default DIR: benchmarks/results):

    python -m benchmarks.rl2_tables_markdown [DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

# The (near-)optimal bandit policies RL² is paired with, task by task.
PAIRED_REFERENCES = {"bayes_optimal": "Bayes-optimal", "gittins": "Gittins"}


def mean_se(value: dict[str, float]) -> str:
    return f"{value['mean']:.2f} ± {value['se']:.2f}"


def cell(result: dict[str, Any], name: str) -> str:
    if name not in result["measured"]:
        return "not trained (budget)" if name == "rl2" else "—"
    return mean_se(result["measured"][name])


def _acts(result: dict[str, Any]) -> str:
    if not result["rl2_trained"]:
        return "—"
    # Rows measured before the choice existed were sampled.
    return (result.get("rl2_actions") or {}).get("chosen", "sample")


def _actions_note(rows: list[dict[str, Any]]) -> list[str]:
    """How each trained row acts in the table, and the validation figures it was chosen on."""
    choices = []
    for r in rows:
        actions = r.get("rl2_actions")
        if not actions:
            continue
        held_out = actions["held_out"]
        choices.append(
            f"{_row_label(r)}: {actions['mode_minus_sample']['mean']:+.3f} ± "
            f"{actions['mode_minus_sample']['se']:.3f} → {actions['chosen']} (held-out: "
            f"sampled {held_out['sample']['mean']:.2f}, mode {held_out['mode']['mean']:.2f})"
        )
    return _note(
        "*RL² acts*: how the trained policy picks its action in the table. *sample* draws it "
        "from the policy's action distribution, as training does; *mode* takes the most "
        "probable action (the paper does not say which its figures used). Each row's choice "
        "was made on validation tasks, a task stream neither training nor the table draws "
        "from: the policy played them both ways, and the mode is used only where it scored "
        "more, paired task by task. Mode minus sampled on the validation tasks, the choice, and "
        "both held-out figures: ", choices)


def _seed_spread_note(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's figure beside the same command's with other training seeds."""
    spreads = []
    for r in rows:
        entries = r.get("rl2_seed_spread")
        if not entries:
            continue
        means = np.array([e["held_out"]["mean"] for e in entries])
        own = r["rl2_settings"]["seed"]
        figures = []
        for e in entries:
            mark = " (the row)" if e["seed"] == own else ""
            figures.append(f"seed {e['seed']} {e['held_out']['mean']:.2f}{mark}")
        spreads.append(f"{_row_label(r)}: {', '.join(figures)}; mean {means.mean():.2f}, "
                       f"standard deviation {means.std(ddof=1):.2f} over {len(means)} seeds")
    return _note(
        "*Training seeds*: rows that were also trained with other training seeds (the same "
        "command with `--set seed=N`; the held-out tasks do not change), each policy measured "
        "as its row is. Where one of them replaced the row it was chosen on validation tasks, "
        "so the row can sit above the seeds' mean; the mean is the figure to expect from a new "
        "run: ", spreads)


def _note(preamble: str, items: list[str]) -> list[str]:
    """A paragraph of per-row figures after its preamble, or nothing if no row has any."""
    return ["", preamble + "; ".join(items) + "."] if items else []


def _row_label(result: dict[str, Any]) -> str:
    return f"{result['n']}, {result['k']}" if result["family"] == "bandit" else f"n = {result['n']}"


def _steps(result: dict[str, Any]) -> str:
    if not result["rl2_trained"]:
        return "—"
    init = result.get("rl2_init_from")
    if init is None:
        return f"{result['rl2_env_steps']:,}"
    if "row" not in init:  # the starting checkpoint could not be read when the row was measured
        source = "another policy"
    elif init["row"] == result["row"]:
        source = f"an earlier {init['row']} policy"
    else:
        source = f"{init['row']}'s policy"
    return f"{result['rl2_env_steps'] + init['env_steps']:,} (from {source})"


def _settings_line(result: dict[str, Any]) -> str:
    rl2 = result["rl2_settings"]["rl2"]
    recurrent = "layer-normalised GRU" if rl2.get("recurrent_cell") == "layer_norm_gru" else "GRU"
    # Settings the shipped rows leave at their defaults are named only when a row sets them.
    value = ", a separate value GRU" if rl2.get("value_network") == "separate" else ""
    decay = f", weight decay {rl2['weight_decay']}" if rl2.get("weight_decay", 0.0) > 0 else ""
    return (
        f"- **{result['row']}**: {recurrent} {rl2['hidden_size']}{value}, lr {rl2['lr']}"
        f"{' annealed linearly to 0' if rl2.get('lr_schedule') == 'linear' else ''}{decay}, "
        f"{rl2['meta_batch_size']} tasks × {rl2['trials_per_task']} trials per update, "
        f"{rl2['epochs']} epochs × {rl2['minibatches']} minibatches, γ {rl2['gamma']}, "
        f"λ {rl2['gae_lambda']}, entropy {rl2['entropy_coef']}, clip {rl2['clip']}, "
        f"reward scale {rl2.get('reward_scale', 1.0)}, "
        f"seed {result['rl2_settings']['seed']}; {result['rl2_updates']} updates, "
        f"{result['rl2_env_steps']:,} env steps, {result['rl2_train_seconds']:.0f} s training"
        f"{_init_note(result.get('rl2_init_from'), result.get('rl2_start'))}. "
        f"Command: `{result['command']}`"
    )


def _init_note(init: dict[str, Any] | None, start: dict[str, Any] | None) -> str:
    if init is None:
        return ""
    trained_on = f"{init['row']}, " if "row" in init else ""
    note = (f", starting from the policy `{init['checkpoint']}` ({trained_on}"
            f"{init['env_steps']:,} env steps before)")
    if start is None:  # a row measured before starting policies were
        return note
    if "note" in start:
        return f"{note} ({start['note']})"
    return (f"{note}, which scores {mean_se(start['held_out'])} on these held-out tasks: "
            f"{start['rl2_minus_start']['mean']:+.2f} ± {start['rl2_minus_start']['se']:.2f} "
            f"from training on this row (paired)")


MDP_LABELS = {"random": "Random", "eps_greedy": "ε-greedy", "greedy": "greedy", "psrl": "PSRL",
              "rl2": "RL² (rlmeta)"}
BANDIT_LABELS = {"random": "Random", "thompson": "TS", "ucb1": "UCB1", "eps_greedy": "ε-greedy",
                 "greedy": "greedy", "gittins": "Gittins", "bayes_optimal": "Bayes-optimal",
                 "rl2": "RL² (rlmeta)"}


def adaptation_ranges(r: dict[str, Any]) -> list[tuple[int, int]]:
    """Episode ranges (first, last; 1-based, inclusive) shown in a row's adaptation table.

    An MDP episode is a whole episode, shown one at a time; a bandit episode is a single pull,
    so pulls are averaged over ranges that widen as the trial goes on.
    """
    n = r["n"]
    if r["family"] == "mdp":
        return [(i, i) for i in sorted({1, 2, 3, 5, 10, n} & set(range(1, n + 1)))]
    edges = [e for e in (1, 2, 5, 10, 20, 40, 70) if e < n] + [n]
    return [(first + 1, last) for first, last in zip([0, *edges[:-1]], edges, strict=True)]


def _adaptation_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Return per episode index of a trial, per policy: where a policy gains (or does not)
    as it sees more of the task."""
    if not rows:
        return []
    bandit = rows[0]["family"] == "bandit"
    unit = "pull" if bandit else "episode"
    lines = [
        (
            "Return per pull of a trial on the same held-out tasks (mean over tasks and over the "
            "pulls in each range; pull 1 is made before anything is known about the task):"
            if bandit else
            "Return per episode of a trial on the same held-out tasks (mean over tasks; episode 1 "
            "is the first episode of a task, before anything is known about it):"
        ),
        "",
    ]
    for r in rows:
        columns = adaptation_ranges(r)
        heading = f"n = {r['n']}" + (f", k = {r['k']}" if bandit else "")
        lines += [
            f"| {heading} | " + " | ".join(
                f"{unit} {first}" if first == last else f"{unit}s {first}–{last}"
                for first, last in columns
            ) + " |",
            "| --- |" + " --- |" * len(columns),
        ]
        curves = [(label, r["per_episode"][name])
                  for name, label in (BANDIT_LABELS if bandit else MDP_LABELS).items()
                  if name in r["per_episode"]]
        start = r.get("rl2_start") or {}
        if "per_episode" in start:
            source = r["rl2_init_from"].get("row")
            curves.append((f"RL² before this row's training ({source}'s policy)" if source
                           else "RL² before this row's training", start["per_episode"]))
        for label, curve in curves:
            lines.append(f"| {label} | " + " | ".join(
                f"{np.mean(curve[first - 1:last]):.{3 if bandit else 2}f}"
                for first, last in columns
            ) + " |")
        lines.append("")
    return lines


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# RL² tables (Duan et al. 2016, Tables 1 and 2), measured by rlmeta",
        "",
        "Every measured column is the mean ± standard error of one trial's total reward over the "
        "same held-out tasks (1000 per row unless noted below), which training never draws. "
        "Baselines are untuned (UCB1 c=√2; ε = 0.1); *paper* columns are copied from the paper, "
        "not measured. RL² rows were trained one at a time on a shared 2-core CPU, one torch "
        "thread; a row marked *not trained (budget)* did not fit the time available and shows "
        "the baselines only. Settings, budget and the exact command of each trained row are "
        "listed under the tables (each row is its own run; rows are collected into one table "
        "with `--merge`); `rl2_tables.json` also holds each row's training curve. *wall s* "
        "covers training, evaluation and baselines on a machine shared with other jobs, so it "
        "varies by up to about 2× between identical runs.",
        "",
    ]
    bandits = [r for r in results if r["family"] == "bandit"]
    if bandits:
        lines += [
            "## Bernoulli bandits",
            "",
            "| n, k | Random | TS | UCB1 | ε-greedy | greedy | Gittins | Bayes-optimal | "
            "RL² (rlmeta) | RL² acts | RL² (paper) | Gittins (paper) | "
            "Bayes-optimal, exact expectation | RL² env steps | wall s |",
            "| --- |" + " --- |" * 14,
        ]
        for r in bandits:
            cells = [cell(r, name) for name in BANDIT_LABELS]  # the header's column order
            expected = r.get("bayes_optimal_expected")
            lines.append(
                f"| {r['n']}, {r['k']} | " + " | ".join(cells)
                + f" | {_acts(r)} | {r['paper']['rl2']} | {r['paper']['gittins']} | "
                + (f"{expected:.3f}" if expected is not None else "—")
                + f" | {_steps(r)} | {r['wall_seconds']:.0f} |"
            )
        lines += [
            "",
            "*Bayes-optimal* plays each arm's Beta(1, 1) posterior (the task distribution's own "
            "prior) optimally for the trial's known length, solved exactly by dynamic programming "
            "(`rlmeta/baselines/bayes_optimal.py`; out of reach for 100 pulls). Its exact "
            "expectation over the task distribution is the most any policy can score on "
            "average, so a paper figure above it is evaluation noise; on a row's held-out tasks, "
            "compare RL² with the measured Bayes-optimal column, which saw the same tasks. "
            "*Gittins* pulls the arm with the highest finite-horizon Gittins index for the pulls "
            "left (the same prior; solved for any trial length): on every trial short enough "
            "to check it is within 0.1% of Bayes-optimal, so for 100 pulls it stands in for the "
            "ceiling the exact policy cannot reach.",
        ]
        lines += _actions_note(bandits)
        lines += _seed_spread_note(bandits)
        for reference, label in PAIRED_REFERENCES.items():
            differences = [
                f"{r['n']}, {r['k']}: {d['mean']:+.3f} ± {d['se']:.3f}"
                for r in bandits
                if (d := r.get("paired", {}).get(f"rl2_minus_{reference}")) is not None
            ]
            if differences:
                lines += [
                    "",
                    f"RL² minus {label}, task by task on the same held-out tasks and env seeds "
                    "(mean ± standard error of the paired difference): " + "; ".join(differences)
                    + ".",
                ]
        lines.append("")
        lines += _adaptation_tables([r for r in bandits if r.get("per_episode")])
    mdps = [r for r in results if r["family"] == "mdp"]
    if mdps:
        lines += [
            "## Random tabular MDPs",
            "",
            "| n | Random | ε-greedy | greedy | PSRL | RL² (rlmeta) | RL² acts | RL² (paper) | "
            "PSRL (paper) | RL² env steps | wall s |",
            "| --- |" + " --- |" * 10,
        ]
        for r in mdps:
            cells = [cell(r, name) for name in MDP_LABELS]  # the header's column order
            lines.append(
                f"| {r['n']} | " + " | ".join(cells)
                + f" | {_acts(r)} | {r['paper']['rl2']} | {r['paper']['psrl']} | {_steps(r)} | "
                f"{r['wall_seconds']:.0f} |"
            )
        lines += [
            "",
            "*greedy* and *ε-greedy* plan each episode on the posterior-mean model of the task "
            "(the task distribution's own priors: rewards N(1, 1), transitions flat Dirichlet); "
            "*PSRL* plans each episode on one model drawn from the same posterior (posterior "
            "sampling, Osband et al. 2013). None is tuned.",
        ]
        lines += _actions_note(mdps)
        lines += _seed_spread_note(mdps)
        lines.append("")
        lines += _adaptation_tables([r for r in mdps if r.get("per_episode")])
    trained = [r for r in results if r["rl2_trained"]]
    if trained:
        lines += ["## RL² settings per trained row", ""]
        lines += [_settings_line(r) for r in trained]
        lines.append("")
    untrained = [r for r in results if not r["rl2_trained"]]
    if untrained:
        lines += [
            "Baseline-only rows were measured with "
            f"`{untrained[0]['command']}`.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, nargs="?", default=Path(__file__).parent / "results",
                        metavar="DIR", help="directory of rl2_tables.json (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = json.loads((args.dir / "rl2_tables.json").read_text())["rows"]
    (args.dir / "rl2_tables.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
