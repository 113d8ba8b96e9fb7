"""A benchmark's own evaluation protocol, run on a checkpoint beside rlmeta's adaptation curve.

An env class may declare the protocol its benchmark publishes results by
(`evaluation_protocol`, see `rlmeta.tasks.evaluation_protocol`; Meta-World's is
`rlmeta_envs.metaworld_protocol`). Here the checkpoint's policy goes behind the protocol's agent
interface (`rlmeta.vector_agent.PolicyAgent`, one policy per vector-env index, each with its own
action stream from the evaluation seed) and the protocol's per-repeat figures become a mean and
95% t-interval over repeats, per split and per task. Outputs: `protocol.json` (settings, every
repeat, summaries), `protocol.csv` and a printed table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta import tasks
from rlmeta.config import ExperimentConfig
from rlmeta.run import build
from rlmeta.run.evaluation import format_mean_ci, mean_ci95
from rlmeta.vector_agent import EVAL_ACTIONS, AgentFeedback, PolicyAgent

JSON_FILE = "protocol.json"
CSV_FILE = "protocol.csv"
ALL_TASKS = "all"  # the CSV's task column for the mean over a split's tasks
_POLICY_STREAM = 2  # seeds of the agent's policies: default_rng([seed, 2, env index])


@dataclass
class ProtocolSummary:
    """Success (and return) over the protocol's repeats for one split and task (or all)."""

    split: str
    task: str
    success: float  # mean over repeats
    ci95: float  # half-width of the 95% t-interval over repeats (NaN for one repeat)
    repeats: int
    mean_return: float | None = None  # for ALL_TASKS: the protocol's mean evaluation return


@dataclass
class ProtocolReport:
    protocol: str
    summaries: list[ProtocolSummary]
    raw: dict[str, Any]  # the protocol's own output: settings and every repeat
    files: list[Path]


def has_protocol(config: ExperimentConfig) -> bool:
    return tasks.evaluation_protocol(config.env) is not None


def run_protocol(
    config: ExperimentConfig,
    algorithm_state: dict[str, Any],
    spaces: tuple[gym.Space, gym.Space],
    out: Path,
    settings: Mapping[str, Any] | None = None,
) -> ProtocolReport:
    """The env's protocol on the checkpoint's policy (`algorithm_state`), written to `out`.
    `settings`: the protocol's keyword arguments (e.g. Meta-World's `num_evals`), and
    `eval_actions` (mode or sample: how the adapted policy acts while evaluated)."""
    protocol = tasks.evaluation_protocol(config.env)
    if protocol is None:
        raise ValueError(f"env {config.env!r} declares no evaluation protocol")
    settings = dict(settings or {})
    eval_actions = settings.pop("eval_actions", "mode")
    if eval_actions not in EVAL_ACTIONS:
        raise ValueError(f"eval_actions must be one of {', '.join(EVAL_ACTIONS)}, "
                         f"got {eval_actions!r}")
    algorithm = build.build_algorithm(config, "cpu", *spaces)
    algorithm.load_state_dict(algorithm_state)

    def make_agent(envs: gym.vector.VectorEnv) -> tuple[PolicyAgent, gym.vector.VectorEnv]:
        _check_spaces(envs, spaces)
        policies = [algorithm.inference_policy(policy_seed(config.seed, i))
                    for i in range(envs.num_envs)]
        agent = PolicyAgent(policies, eval_actions)
        return agent, AgentFeedback(envs, agent)

    raw = protocol(make_agent, config.env_kwargs, **settings)
    raw["settings"] = {**raw.get("settings", {}), "eval_actions": eval_actions,
                       "policy_seed": config.seed}
    summaries = summarize_protocol(raw)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / JSON_FILE, out / CSV_FILE]
    files[0].write_text(json.dumps(
        {**raw, "summaries": [asdict(s) for s in summaries]}, indent=2, allow_nan=True) + "\n")
    write_protocol_csv(files[1], summaries)
    return ProtocolReport(raw.get("protocol", protocol.__name__), summaries, raw, files)


def policy_seed(seed: int, env_index: int) -> int:
    """The action-stream seed of env `env_index`'s policy: distinct per env, fixed by `seed`."""
    return int(np.random.default_rng([seed, _POLICY_STREAM, env_index]).integers(2**31 - 1))


def _check_spaces(envs: gym.vector.VectorEnv, spaces: tuple[gym.Space, gym.Space]) -> None:
    trained = tuple(getattr(space, "shape", None) for space in spaces)
    official = (envs.single_observation_space.shape, envs.single_action_space.shape)
    if trained != official:
        raise ValueError(f"the protocol's envs have observation and action shapes {official}; "
                         f"the policy was trained on {trained}")


def summarize_protocol(raw: Mapping[str, Any]) -> list[ProtocolSummary]:
    """Per split: the mean over tasks, then each task, as mean and CI over repeats."""
    out = []
    for split, result in raw["splits"].items():
        repeats = result["repeats"]
        success, half = mean_ci95([r["success"] for r in repeats])
        mean_return = float(np.mean([r["return"] for r in repeats]))
        out.append(ProtocolSummary(split, ALL_TASKS, success, half, len(repeats), mean_return))
        for task in sorted({name for r in repeats for name in r["tasks"]}):
            values = [r["tasks"][task] for r in repeats if task in r["tasks"]]
            success, half = mean_ci95(values)
            out.append(ProtocolSummary(split, task, success, half, len(values)))
    return out


def read_protocol_json(path: str | Path) -> dict[str, Any]:
    """What `run_protocol` wrote: settings, the splits' repeats and the summaries."""
    return json.loads(Path(path).read_text())


def write_protocol_csv(path: Path, summaries: list[ProtocolSummary]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["split", "task", "success", "ci95_low", "ci95_high", "repeats",
                         "mean_return"])
        for s in summaries:
            ret = "" if s.mean_return is None else f"{s.mean_return:.6g}"
            writer.writerow([s.split, s.task, f"{s.success:.6g}", f"{s.success - s.ci95:.6g}",
                             f"{s.success + s.ci95:.6g}", s.repeats, ret])


def format_protocol_table(report: ProtocolReport) -> str:
    """One row per split and task: success rate, mean ± 95% CI over repeats."""
    splits = {"train": "meta-train", "test": "meta-test"}
    rows = [["split", "task", "success (mean ± 95% CI over repeats)", "repeats"]]
    for s in report.summaries:
        rows.append([splits.get(s.split, s.split), s.task, format_mean_ci(s.success, s.ci95),
                     str(s.repeats)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
