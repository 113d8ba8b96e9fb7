"""benchmarks/rl2_tables.py: a table row is an `rlmeta train` run of the row's experiment files,
measured beside the baselines on held-out tasks; the shipped table is what those files train."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.rl2_reproduction import differing_settings
from benchmarks.rl2_tables import (
    ROWS,
    compare_policies,
    evaluate_rl2,
    load_policy,
    main,
    parse_args,
    refresh_baselines,
    row_of,
    write_tables,
)
from benchmarks.rl2_tables_markdown import adaptation_ranges
from benchmarks.rl2_tables_markdown import main as render_markdown
from rlmeta import checkpoint
from rlmeta.algorithm import TaskSpec
from rlmeta.checkpoint import checkpoint_path
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.config_io import load_config
from rlmeta.rl2 import RL2Algorithm, collate_trials
from rlmeta.rl2.config import RL2Config
from rlmeta.run import cli
from rlmeta.tasks import make_task_env

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
RESULTS = ROOT / "benchmarks" / "results"
# Each trained row's experiment files, stage by stage (the last is the row), and the env steps
# its stages were trained for (the budgets `make bench` used to pass, and the files' headers say).
ROW_STAGES = {
    "bandit-10-5": [("rl2_bandit_k5_n10", 8_000_000)],
    "bandit-10-10": [("rl2_bandit_k10_n10", 8_000_000)],
    "bandit-10-50": [("rl2_bandit_k50_n10", 12_000_000)],
    "bandit-100-5": [("rl2_bandit_k5_n100", 40_000_000)],
    "bandit-100-10": [("rl2_bandit_k10_n100", 80_000_000)],
    "bandit-100-50": [("rl2_bandit_k50_n100", 80_000_000)],
    "mdp-10": [("rl2_tabular_mdp_n10_stage1", 110_000_000), ("rl2_tabular_mdp_n10", 30_000_000)],
    "mdp-25": [("rl2_tabular_mdp_n10_stage1", 110_000_000),
               ("rl2_tabular_mdp_n25_stage1", 60_000_000),
               ("rl2_tabular_mdp_n25_stage2", 60_000_000), ("rl2_tabular_mdp_n25", 50_000_000)],
}
STAGE_RUNS = {"rl2_tabular_mdp_n10_stage1": "mdp-10_stage1", "rl2_tabular_mdp_n10": "mdp-10",
              "rl2_tabular_mdp_n25_stage1": "mdp-25_stage1",
              "rl2_tabular_mdp_n25_stage2": "mdp-25_stage2", "rl2_tabular_mdp_n25": "mdp-25"}
# A row's file at a size that trains in a second: 2 tasks per update, a GRU of 8.
TINY = ("rl2.hidden_size=8", "rl2.meta_batch_size=2", "envs_per_worker=8", "checkpoint_every=2")
EVAL = ["--tasks", "6", "--eval-batch", "3"]


def rlmeta_train(experiment: str, run_dir: Path, *overrides: str) -> Path:
    """`rlmeta train experiments/<experiment>.yaml --run-dir run_dir`, at the TINY size."""
    sets = [arg for override in (*TINY, *overrides) for arg in ("--set", override)]
    status = cli.main(["train", str(EXPERIMENTS / f"{experiment}.yaml"), *sets,
                       "--run-dir", str(run_dir)])
    assert status == 0
    return run_dir


def measured(out: Path) -> dict:
    return json.loads((out / "rl2_tables.json").read_text())["rows"][0]


def steps_per_update(config: ExperimentConfig) -> int:
    horizon = int(make_task_env(config.env, **config.env_kwargs).unwrapped.horizon)
    settings = config.rl2
    return (settings.meta_batch_size * settings.trials_per_task * settings.episodes_per_trial
            * horizon)


def small_algorithm(arms: int = 3, episodes: int = 4) -> RL2Algorithm:
    config = ExperimentConfig(
        algorithm="rl2", env="rlmeta/Bandit-v0", env_kwargs={"arms": arms},
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(episodes_per_trial=episodes, hidden_size=8),
    )
    env = make_task_env(config.env, **config.env_kwargs)
    torch.manual_seed(0)
    return RL2Algorithm(config, env.observation_space, env.action_space)


def test_each_trial_runs_on_its_own_task_and_recomputes_exactly():
    torch.set_num_threads(1)
    algorithm = small_algorithm()
    # Deterministic arms: the reward of a pull names the task it came from.
    tasks = [{"means": [1.0, 0.0, 0.0]}, {"means": [0.0, 1.0, 0.0]}, {"means": [0.0, 0.0, 1.0]}]
    envs = [make_task_env("rlmeta/Bandit-v0", arms=3) for _ in range(6)]
    specs = [TaskSpec(i, task, seed=5 + i) for i, task in enumerate(tasks)]
    results = algorithm.run_tasks(envs, specs, 0, num_trials=2)
    assert [r.rollouts[0].num_sequences for r in results] == [2, 2, 2]
    assert sum(r.env_steps for r in results) == 6 * 4
    for result, task in zip(results, tasks, strict=True):
        (rollout,) = result.rollouts
        means = np.asarray(task["means"])
        np.testing.assert_array_equal(rollout.rewards, means[rollout.actions])
    batch = collate_trials(results)
    with torch.no_grad():
        distribution, _ = algorithm._evaluate_batch(batch)
        log_probs = distribution.log_prob(batch.actions)
    torch.testing.assert_close(log_probs * batch.mask, batch.old_log_probs * batch.mask)


def test_evaluation_gives_each_episode_return_of_one_trial_per_held_out_task():
    algorithm = small_algorithm(episodes=4)
    tasks = [{"means": [1.0, 1.0, 1.0]}, {"means": [0.0, 0.0, 0.0]}, {"means": [1.0, 1.0, 1.0]}]
    # Every arm pays 1 (or 0), so each of a trial's 4 pulls returns exactly 1 (or 0), in task
    # order, across two evaluation batches.
    returns = evaluate_rl2(algorithm, algorithm.config, tasks, seed=3, batch=2)
    np.testing.assert_array_equal(returns, [[1.0] * 4, [0.0] * 4, [1.0] * 4])


@pytest.mark.parametrize("name", sorted(ROW_STAGES))
def test_each_rows_experiment_files_train_what_the_shipped_row_was_trained_with(name) -> None:
    # The table's row is what its files train: the row's tasks, its settings, its budget as
    # iterations, the whole meta-batch in one sampling call, and each stage starting from the run
    # of the one before.
    shipped = {r["row"]: r for r in json.loads((RESULTS / "rl2_tables.json").read_text())["rows"]}
    row = shipped[name]
    stages = ROW_STAGES[name]
    steps_before, previous_run = 0, None
    for stem, budget in stages:
        config = load_config(EXPERIMENTS / f"{stem}.yaml")
        per_update = steps_per_update(config)
        assert config.iterations == math.ceil(budget / per_update), stem
        assert (config.workers, config.envs_per_worker) == (
            0, config.rl2.meta_batch_size * config.rl2.trials_per_task), stem
        expected_start = None if previous_run is None else f"runs/rl2_tables/{previous_run}"
        assert config.init_from == expected_start, stem
        previous_run = STAGE_RUNS.get(stem, name)
        if stem != stages[-1][0]:
            steps_before += config.iterations * per_update
            continue
        assert row_of(config, stem).name == name
        settings = {"seed": config.seed, "policy": config.policy.model_dump(),
                    "rl2": config.rl2.model_dump()}
        assert differing_settings(row["rl2_settings"], settings) == []
        assert config.iterations == row["rl2_updates"]
        assert config.iterations * per_update == row["rl2_env_steps"]
        # The shipped row started from the earlier loop's copy of that stage's policy.
        init = row.get("rl2_init_from")
        assert (init and (init["checkpoint"].removesuffix(".pt"), init["env_steps"])) == (
            expected_start and (expected_start, steps_before))


def test_make_bench_trains_each_rows_files_in_order_and_measures_the_row() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "rl2_tables --config" not in makefile and "--init-from" not in makefile
    trains = re.findall(r"rlmeta train experiments/(rl2_(?:bandit|tabular)\S*)\.yaml "
                        r"--run-dir runs/rl2_tables/(\S+)$", makefile, re.MULTILINE)
    evaluates = re.findall(r"benchmarks\.rl2_tables --evaluate runs/rl2_tables/(\S+) --merge$",
                           makefile, re.MULTILINE)
    assert evaluates == list(ROW_STAGES)
    for name, stages in ROW_STAGES.items():
        runs = [STAGE_RUNS.get(stem, name) for stem, _ in stages]
        # Each stage's file into its run directory, in order, the row's last; then measured.
        assert [(stem, run) for stem, run in trains if run in runs] == [
            (stem, run) for (stem, _), run in zip(stages, runs, strict=True)]
        assert makefile.index(f"--run-dir runs/rl2_tables/{name}\n") < makefile.index(
            f"--evaluate runs/rl2_tables/{name} ")


def test_the_shipped_table_renders_from_its_json_byte_for_byte(tmp_path: Path) -> None:
    shutil.copy(RESULTS / "rl2_tables.json", tmp_path / "rl2_tables.json")
    render_markdown([str(tmp_path)])
    assert (tmp_path / "rl2_tables.md").read_bytes() == (RESULTS / "rl2_tables.md").read_bytes()


def test_a_row_trained_by_rlmeta_train_is_measured_as_its_row(tmp_path: Path) -> None:
    run_dir = rlmeta_train("rl2_bandit_k5_n10", tmp_path / "run", "iterations=4")
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    main(["--evaluate", str(run_dir), "--out", str(tmp_path / "table"), *EVAL])
    row = measured(tmp_path / "table")
    assert (row["row"], row["rl2_trained"], row["rl2_updates"]) == ("bandit-10-5", True, 4)
    assert row["rl2_env_steps"] == logged[-1]["env_steps"] == 4 * 2 * 4 * 10
    assert row["rl2_settings"]["seed"] == 1 and row["rl2_settings"]["rl2"]["hidden_size"] == 8
    assert row["command"] == f"rlmeta train {run_dir / 'config.yaml'} --run-dir {run_dir}"
    # RL² is paired task by task with both near-optimal bandit policies.
    assert set(row["paired"]) == {"rl2_minus_bayes_optimal", "rl2_minus_gittins"}
    assert row["paired"]["rl2_minus_gittins"]["mean"] == pytest.approx(
        row["measured"]["rl2"]["mean"] - row["measured"]["gittins"]["mean"])
    actions = row["rl2_actions"]
    assert actions["chosen"] == ("mode" if actions["mode_minus_sample"]["mean"] > 0 else "sample")
    assert row["measured"]["rl2"] == actions["held_out"][actions["chosen"]]
    table = (tmp_path / "table" / "rl2_tables.md").read_text()
    assert f"| {row['measured']['rl2']['mean']:.2f} ± " in table
    assert f"→ {actions['chosen']} (held-out: sampled " in table
    # Measured again from the run alone, the row is the same.
    main(["--evaluate", str(checkpoint_path(run_dir, 4)), "--out", str(tmp_path / "again"), *EVAL])
    again = measured(tmp_path / "again")
    for key in ("measured", "per_episode", "paired", "rl2_env_steps", "rl2_updates",
                "rl2_settings", "rl2_actions", "command"):
        assert again[key] == row[key], key


def test_a_runs_curve_is_read_from_its_metrics_at_the_checkpoint_measured(tmp_path: Path) -> None:
    run_dir = rlmeta_train("rl2_bandit_k5_n10", tmp_path / "run", "iterations=20",
                           "checkpoint_every=10")
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    _, newest, _ = load_policy(run_dir)
    _, early, _ = load_policy(checkpoint_path(run_dir, 10))
    assert [p["updates"] for p in newest.curve] == [10, 20]
    assert newest.curve[1]["return/trial"] == logged[19]["return/trial"]
    assert early.updates == 10 and [p["updates"] for p in early.curve] == [10]
    weights = [run.algorithm.get_weights() for run in (newest, early)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # A checkpoint copied out of its run has no curve beside it and says where its config is.
    copied = tmp_path / "copied.pt"
    copied.write_bytes(checkpoint_path(run_dir, 20).read_bytes())
    _, alone, command = load_policy(copied)
    assert (alone.updates, alone.curve, command) == (
        20, [], f"rlmeta train (the config stored in {copied})")


def test_a_policy_saved_by_the_earlier_loop_is_still_measured(tmp_path: Path) -> None:
    # The shipped rows' policies were saved by this module's own loop, with an rl2_tables entry.
    run_dir = rlmeta_train("rl2_bandit_k5_n10", tmp_path / "run", "iterations=2")
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))
    curve = [{"updates": 2, "env_steps": 160, "seconds": 0.5, "return/trial": 5.0}]
    state["rl2_tables"] = {"row": "bandit-10-5", "seconds": 3.0, "curve": curve,
                           "command": "python -m benchmarks.rl2_tables --only bandit-10-5"}
    legacy = checkpoint.save_checkpoint(state, tmp_path / "bandit-10-5.pt")
    main(["--evaluate", str(legacy), "--out", str(tmp_path / "legacy"), *EVAL])
    main(["--evaluate", str(run_dir), "--out", str(tmp_path / "run_table"), *EVAL])
    old, new = measured(tmp_path / "legacy"), measured(tmp_path / "run_table")
    assert old["measured"] == new["measured"]
    assert (old["rl2_curve"], old["rl2_train_seconds"]) == (curve, 3.0)
    assert old["command"] == "python -m benchmarks.rl2_tables --only bandit-10-5"


def test_a_staged_row_counts_every_stage_behind_it_and_measures_its_start(tmp_path: Path) -> None:
    # mdp-25 starts from mdp-10's first stage, then each of its stages from the one before: the
    # table's env steps are the whole chain's, and the policy a stage started from is measured
    # beside it.
    runs = tmp_path / "runs"
    tiny = ("iterations=2", "rl2.trials_per_task=1")
    first = rlmeta_train("rl2_tabular_mdp_n10_stage1", runs / "mdp-10_stage1", *tiny)
    second = rlmeta_train("rl2_tabular_mdp_n25_stage1", runs / "mdp-25_stage1", *tiny,
                          f"init_from={first}")
    third = rlmeta_train("rl2_tabular_mdp_n25_stage2", runs / "mdp-25_stage2", *tiny,
                         f"init_from={second}")
    common = ["--tasks", "2", "--eval-batch", "2"]
    main(["--evaluate", str(second), "--out", str(tmp_path / "second"), *common])
    main(["--evaluate", str(third), "--out", str(tmp_path / "third"), *common])
    first_steps = 2 * (2 * 1 * 10 * 10)
    stage_steps = 2 * (2 * 1 * 25 * 10)
    row = measured(tmp_path / "second")
    assert row["rl2_env_steps"] == stage_steps
    assert row["rl2_init_from"]["env_steps"] == first_steps
    assert row["rl2_init_from"]["checkpoint"] == str(checkpoint_path(first, 2))
    table = (tmp_path / "second" / "rl2_tables.md").read_text()
    assert f"{stage_steps + first_steps:,} (from mdp-10's policy)" in table
    assert "| RL² before this row's training (mdp-10's policy) |" in table
    gain = row["rl2_start"]["rl2_minus_start"]
    assert row["rl2_start"]["held_out"]["mean"] + gain["mean"] == pytest.approx(
        row["measured"]["rl2"]["mean"])
    assert f"on these held-out tasks: {gain['mean']:+.2f} ± {gain['se']:.2f}" in table
    row = measured(tmp_path / "third")
    assert row["rl2_init_from"]["env_steps"] == stage_steps + first_steps
    assert (f"{2 * stage_steps + first_steps:,} (from an earlier mdp-25 policy)"
            in (tmp_path / "third" / "rl2_tables.md").read_text())
    # A starting policy whose file now holds other weights is not measured; a note says why.
    shutil.copy(checkpoint_path(third, 2), checkpoint_path(second, 2))
    main(["--evaluate", str(third), "--out", str(tmp_path / "third"), *common])
    row = measured(tmp_path / "third")
    assert "holds other weights than this run started from" in row["rl2_start"]["note"]
    assert row["rl2_start"]["note"] in (tmp_path / "third" / "rl2_tables.md").read_text()


def test_runs_of_no_row_and_checkpoints_of_no_run_are_refused(tmp_path: Path) -> None:
    mdp_12 = rlmeta_train("rl2_tabular_mdp_n10_stage1", tmp_path / "mdp-12", "iterations=1",
                          "rl2.episodes_per_trial=12")
    with pytest.raises(ValueError, match=r"\('rlmeta/TabularMDP-v0', \{\}, 12\), no row"):
        main(["--evaluate", str(mdp_12), "--out", str(tmp_path / "x")])
    foreign = checkpoint.save_checkpoint(checkpoint.make_checkpoint({}, {}, 0, 0, {}),
                                         tmp_path / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="neither by `rlmeta train` nor by"):
        main(["--evaluate", str(foreign), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["--evaluate", str(foreign), "--compare", str(foreign), str(foreign)])
    with pytest.raises(SystemExit):
        parse_args(["--budget", "1000"])  # training is `rlmeta train`'s


def test_merged_writes_keep_rows_written_by_other_runs(tmp_path: Path) -> None:
    # Rows are measured in parallel runs and each merges at its end: a run must add its row to
    # what is in the file then, not to what was there when it started.
    shipped = json.loads((RESULTS / "rl2_tables.json").read_text())
    first, second = shipped["rows"][0], shipped["rows"][1]
    write_tables(tmp_path, {first["row"]: first}, merge=True)
    write_tables(tmp_path, {second["row"]: second}, merge=True)
    rows = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"]
    assert [r["row"] for r in rows] == [first["row"], second["row"]]
    retrained = {**first, "rl2_env_steps": 1}
    write_tables(tmp_path, {first["row"]: retrained}, merge=True)
    rows = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"]
    assert [r["rl2_env_steps"] for r in rows] == [1, second["rl2_env_steps"]]
    write_tables(tmp_path, {second["row"]: second}, merge=False)
    rows = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"]
    assert [r["row"] for r in rows] == [second["row"]]
    table = (tmp_path / "rl2_tables.md").read_text()
    assert "Bernoulli bandits" in table
    # The shipped n=10 bandit rows were measured beside the Bayes-optimal baseline on the same
    # tasks; the table reports their paired difference.
    paired = second["paired"]["rl2_minus_bayes_optimal"]
    assert f"{second['n']}, {second['k']}: {paired['mean']:+.3f} ± {paired['se']:.3f}" in table


def test_refreshing_baselines_adds_new_ones_keeps_rl2_and_refuses_drift(tmp_path: Path) -> None:
    main(["--tasks", "6", "--only", "bandit-10-5", "--out", str(tmp_path)])
    path = tmp_path / "rl2_tables.json"
    measured_first = json.loads(path.read_text())["rows"][0]["measured"]
    # A row written before the Bayes-optimal baseline existed, with an RL² result to keep.
    data = json.loads(path.read_text())
    row = data["rows"][0]
    del row["measured"]["bayes_optimal"], row["bayes_optimal_expected"]
    row["measured"]["rl2"] = {"mean": 1.25, "se": 0.5}
    path.write_text(json.dumps(data))
    refresh_baselines(tmp_path, seed=0)
    row = json.loads(path.read_text())["rows"][0]
    assert row["measured"]["bayes_optimal"] == measured_first["bayes_optimal"]
    assert row["measured"]["rl2"] == {"mean": 1.25, "se": 0.5}
    assert row["bayes_optimal_expected"] == pytest.approx(6.66, abs=0.005)
    # A stored baseline the code no longer reproduces is reported, not silently replaced.
    row["measured"]["greedy"]["mean"] += 0.5
    path.write_text(json.dumps({"rows": [row]}))
    with pytest.raises(ValueError, match="baseline greedy no longer reproduces"):
        refresh_baselines(tmp_path, seed=0)


def test_mdp_rows_report_each_policys_return_per_episode_of_a_trial(tmp_path: Path) -> None:
    main(["--tasks", "40", "--only", "mdp-10", "--out", str(tmp_path)])
    row = measured(tmp_path)
    assert not row["rl2_trained"]
    assert row["command"] == "python -m benchmarks.rl2_tables --tasks 40 --only mdp-10"
    for name in ("random", "eps_greedy", "greedy", "psrl"):
        curve = row["per_episode"][name]
        assert len(curve) == 10
        assert sum(curve) == pytest.approx(row["measured"][name]["mean"], abs=1e-3)
    # The planners learn the task as the trial goes on; the random policy cannot.
    greedy, random = row["per_episode"]["greedy"], row["per_episode"]["random"]
    psrl = row["per_episode"]["psrl"]
    assert np.mean(greedy[5:]) - greedy[0] > 2.0
    assert np.mean(psrl[5:]) - psrl[0] > 2.0
    assert abs(np.mean(random[5:]) - random[0]) < 2.0
    table = (tmp_path / "rl2_tables.md").read_text()
    assert "| n = 10 | episode 1 | episode 2 | episode 3 | episode 5 | episode 10 |" in table
    assert f"| greedy | {greedy[0]:.2f} | {greedy[1]:.2f} |" in table
    # Rows stored before curves existed gain the baselines' curves when refreshed.
    data = json.loads((tmp_path / "rl2_tables.json").read_text())
    del data["rows"][0]["per_episode"]
    (tmp_path / "rl2_tables.json").write_text(json.dumps(data))
    refresh_baselines(tmp_path, seed=0)
    assert measured(tmp_path)["per_episode"]["greedy"] == greedy


def test_bandit_rows_report_return_per_pull_over_widening_ranges(tmp_path: Path) -> None:
    main(["--tasks", "40", "--only", "bandit-10-5", "--out", str(tmp_path)])
    row = measured(tmp_path)
    table = (tmp_path / "rl2_tables.md").read_text()
    assert "| n = 10, k = 5 | pull 1 | pull 2 | pulls 3–5 | pulls 6–10 |" in table
    greedy = row["per_episode"]["greedy"]
    cells = [greedy[0], greedy[1], np.mean(greedy[2:5]), np.mean(greedy[5:10])]
    assert "| greedy | " + " | ".join(f"{c:.3f}" for c in cells) + " |" in table
    # A trial of 100 pulls is summarised over ranges that cover every pull exactly once.
    assert adaptation_ranges({"family": "bandit", "n": 100}) == [
        (1, 1), (2, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, 70), (71, 100)
    ]
    assert adaptation_ranges({"family": "mdp", "n": 25}) == [
        (1, 1), (2, 2), (3, 3), (5, 5), (10, 10), (25, 25)
    ]


def test_some_rows_into_the_shipped_table_need_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run without --merge, a one-row command would rewrite the shipped table as that one row.
    # (A stand-in table, so a failure cannot touch the real one.)
    import benchmarks.rl2_tables as rl2_tables

    monkeypatch.setattr(rl2_tables, "TABLE_DIR", tmp_path)
    with pytest.raises(SystemExit, match="without --merge would drop its other rows"):
        main(["--only", "bandit-10-5"])
    with pytest.raises(SystemExit, match="without --merge"):
        main(["--only", "mdp-10", "--out", str(tmp_path)])
    assert not (tmp_path / "rl2_tables.json").exists()
    main(["--tasks", "4", "--only", "bandit-10-5", "--merge"])
    assert (tmp_path / "rl2_tables.json").is_file()
    # Nor may a row of baselines replace a trained row of the shipped table.
    shipped = json.loads((RESULTS / "rl2_tables.json").read_text())["rows"][0]
    assert shipped["row"] == "bandit-10-5" and shipped["rl2_trained"]
    (tmp_path / "rl2_tables.json").write_text(json.dumps({"rows": [shipped]}))
    with pytest.raises(SystemExit, match="hold RL² results that measuring their baselines"):
        main(["--tasks", "4", "--only", "bandit-10-5", "--merge"])
    main(["--tasks", "4", "--only", "bandit-10-10", "--merge"])
    assert [r["row"] for r in json.loads((tmp_path / "rl2_tables.json").read_text())["rows"]] == [
        "bandit-10-5", "bandit-10-10"]


@pytest.mark.parametrize(("overrides", "row"), [
    ([], "mdp-10"),
    (["env=rlmeta/Bandit-v0", "env_kwargs.arms=5", "rl2.episodes_per_trial=100"], "bandit-100-5"),
    (["env=rlmeta/Bandit-v0", "env_kwargs.arms=50", "rl2.episodes_per_trial=100"],
     "bandit-100-50"),
])
def test_the_cluster_recipe_is_a_row_at_240k_steps_per_update(overrides, row) -> None:
    # As its header says: the mdp-10 row, or with three overrides an n=100 bandit row, at the
    # published reproduction's batch.
    config = load_config(EXPERIMENTS / "rl2_tabular_mdp_n10_cluster.yaml", overrides)
    assert row_of(config, "the recipe").name == row
    assert steps_per_update(config) == 240_000


def test_compare_pairs_two_runs_on_validation_not_held_out_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Choosing a setting on the held-out tasks would make the table's figure the one the choice
    # was made on; `--compare` pairs two policies on a third task stream instead.
    from benchmarks.rl2_tables import held_out_tasks, validation_tasks

    row = next(r for r in ROWS if r.name == "bandit-10-5")
    held_out, held_out_seed = held_out_tasks(row, 5, 0)
    validation, validation_seed = validation_tasks(row, 5, 0)
    assert held_out_seed != validation_seed
    assert not any(a == b for a in held_out for b in validation)

    base = rlmeta_train("rl2_bandit_k5_n10", tmp_path / "a", "iterations=3")
    candidate = rlmeta_train("rl2_bandit_k5_n10", tmp_path / "b", "iterations=3", "seed=0")
    result = compare_policies(base, candidate, 30, 0, 10)
    gain = result["candidate_minus_base"]["mean"]
    assert gain == pytest.approx(result["candidate"]["mean"] - result["base"]["mean"])
    assert compare_policies(base, base, 30, 0, 10)["candidate_minus_base"]["mean"] == 0.0
    main(["--compare", str(base), str(candidate), "--tasks", "30", "--eval-batch", "10"])
    assert f"candidate − base {gain:.2f}" in capsys.readouterr().out

    other = rlmeta_train("rl2_bandit_k10_n10", tmp_path / "c", "iterations=1")
    with pytest.raises(ValueError, match="two policies of one row"):
        compare_policies(base, other, 4, 0, 2)


@pytest.mark.parametrize(("gain", "chosen"), [(0.5, "mode"), (0.0, "sample"), (-0.5, "sample")])
def test_the_mode_is_used_only_where_it_beat_sampling_on_validation_tasks(
    monkeypatch: pytest.MonkeyPatch, gain: float, chosen: str
) -> None:
    import benchmarks.rl2_tables as tables

    seen = []

    def fake_evaluate(algorithm, config, tasks, seed, batch, actions="sample"):
        seen.append((seed, actions))
        base = np.arange(len(tasks), dtype=float)[:, None]
        return base + (gain if actions == "mode" else 0.0)

    monkeypatch.setattr(tables, "evaluate_rl2", fake_evaluate)
    row = next(r for r in ROWS if r.name == "bandit-10-5")
    choice = tables.choose_actions(SimpleNamespace(algorithm=None, config=None), row, 8, 0, 4)
    assert choice["chosen"] == chosen
    assert choice["mode_minus_sample"]["mean"] == pytest.approx(gain)
    # Both ways on the validation stream's env seeds, never on the held-out ones.
    _, validation_seed = tables.validation_tasks(row, 8, 0)
    assert sorted(seen) == [(validation_seed, "mode"), (validation_seed, "sample")]


def test_seed_spread_measures_each_seed_as_the_row_and_records_it_beside_the_row(
    tmp_path: Path,
) -> None:
    # A row is one training seed; the spread says how far another run of its file would land.
    runs = [rlmeta_train("rl2_bandit_k5_n10", tmp_path / f"seed{seed}", "iterations=3",
                         f"seed={seed}") for seed in (0, 1, 2)]
    out = tmp_path / "table"
    common = ["--tasks", "20"]
    main(["--evaluate", str(runs[0]), "--out", str(out), *common])
    main(["--evaluate", str(runs[1]), "--out", str(tmp_path / "seed1_table"), *common])
    main(["--seed-spread", str(runs[0]), str(runs[1]), "--out", str(out), *common])
    row = measured(out)
    spread = row["rl2_seed_spread"]
    assert [e["seed"] for e in spread] == [0, 1]
    # Seed 0 is the row's own policy: measured the same way, it gives the row's own figure.
    assert spread[0]["held_out"] == row["measured"]["rl2"]
    assert spread[0]["acts"] == row["rl2_actions"]["chosen"]
    assert spread[1]["held_out"] == measured(tmp_path / "seed1_table")["measured"]["rl2"]
    assert spread[0]["held_out"] != spread[1]["held_out"]
    means = [e["held_out"]["mean"] for e in spread]
    table = (out / "rl2_tables.md").read_text()
    assert f"10, 5: seed 0 {means[0]:.2f} (the row), seed 1 {means[1]:.2f}; mean " in table
    assert f"standard deviation {np.std(means, ddof=1):.2f} over 2 seeds" in table

    # The row's own policy must be among them, and one policy per seed.
    with pytest.raises(ValueError, match="row bandit-10-5 is seed 0 at 240 steps"):
        main(["--seed-spread", str(runs[1]), str(runs[2]), "--out", str(out), *common])
    with pytest.raises(ValueError, match=r"one policy per training seed; got seeds \[1, 1\]"):
        main(["--seed-spread", str(runs[1]), str(runs[1]), "--out", str(out), *common])
    with pytest.raises(ValueError, match="at least two training seeds; got 1"):
        main(["--seed-spread", str(runs[0]), "--out", str(out)])


def test_the_settings_line_names_the_recurrent_cell() -> None:
    from benchmarks.rl2_tables_markdown import _settings_line

    result = {"row": "mdp-10", "rl2_settings": {"seed": 0, "rl2": RL2Config().model_dump()},
              "rl2_updates": 1, "rl2_env_steps": 10, "rl2_train_seconds": 1.0, "command": "c"}
    assert "**mdp-10**: GRU 256, lr" in _settings_line(result)
    result["rl2_settings"]["rl2"]["recurrent_cell"] = "layer_norm_gru"
    assert "**mdp-10**: layer-normalised GRU 256, lr" in _settings_line(result)
    # The cluster recipe's settings, which no shipped row uses, are named when set.
    assert "value" not in _settings_line(result) and "decay" not in _settings_line(result)
    result["rl2_settings"]["rl2"].update(value_network="separate", weight_decay=0.01, lr=2e-4)
    assert ("layer-normalised GRU 256, a separate value GRU, lr 0.0002, weight decay 0.01, "
            in _settings_line(result))
