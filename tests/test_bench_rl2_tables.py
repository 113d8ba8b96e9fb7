"""benchmarks/rl2_tables.py: its batched sampling (`RL2Algorithm.run_tasks`, one policy forward
for the trials of many tasks) keeps each trial on its own task and records what the learner needs
to recompute it exactly."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.rl2_tables import (
    ROWS,
    compare_policies,
    evaluate_rl2,
    initial_policy,
    load_policy,
    main,
    parse_args,
    refresh_baselines,
    rl2_config,
    row_of,
    write_tables,
)
from benchmarks.rl2_tables_markdown import adaptation_ranges
from rlmeta.algorithm import TaskSpec
from rlmeta.checkpoint import checkpoint_path
from rlmeta.config import PolicyConfig, with_changes
from rlmeta.config_io import load_config
from rlmeta.rl2 import RL2Algorithm, collate_trials
from rlmeta.rl2.config import RL2Config
from rlmeta.run.train import train
from rlmeta.tasks import make_task_env
from rlmeta.warm_start import weights_digest

ROOT = Path(__file__).resolve().parents[1]


def small_algorithm(arms: int = 3, episodes: int = 4) -> RL2Algorithm:
    row = next(r for r in ROWS if r.family == "bandit")
    args = parse_args(["--hidden-size", "8", "--only", row.name])
    config = rl2_config(row, args)
    config.env_kwargs = {"arms": arms}
    config.rl2.episodes_per_trial = episodes
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


def test_too_few_envs_for_the_tasks_is_an_error():
    algorithm = small_algorithm()
    envs = [make_task_env("rlmeta/Bandit-v0", arms=3)]
    specs = [TaskSpec(i, {"means": [0.5] * 3}, seed=i) for i in range(2)]
    with pytest.raises(ValueError, match="2 specs need 2 envs, got 1"):
        algorithm.run_tasks(envs, specs, 0, num_trials=1)


def test_evaluation_gives_each_episode_return_of_one_trial_per_held_out_task():
    algorithm = small_algorithm(episodes=4)
    tasks = [{"means": [1.0, 1.0, 1.0]}, {"means": [0.0, 0.0, 0.0]}, {"means": [1.0, 1.0, 1.0]}]
    # Every arm pays 1 (or 0), so each of a trial's 4 pulls returns exactly 1 (or 0), in task
    # order, across two evaluation batches.
    returns = evaluate_rl2(algorithm, algorithm.config, tasks, seed=3, batch=2)
    np.testing.assert_array_equal(returns, [[1.0] * 4, [0.0] * 4, [1.0] * 4])


def test_a_config_for_another_row_is_rejected_by_name():
    config = str(ROOT / "experiments" / "rl2_bandit_k5_n10.yaml")
    args = parse_args(["--config", config, "--only", "bandit-10-10"])
    row = next(r for r in ROWS if r.name == "bandit-10-10")
    with pytest.raises(ValueError, match="row bandit-10-10 expects"):
        rl2_config(row, args)


def test_merged_writes_keep_rows_written_by_other_runs(tmp_path: Path) -> None:
    # Rows train in parallel runs and each merges at its end: a run must add its row to what is
    # in the file then, not to what was there when it started.
    shipped = json.loads((ROOT / "benchmarks" / "results" / "rl2_tables.json").read_text())
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
    # The shipped n=10 bandit rows were trained beside the Bayes-optimal baseline on the same
    # tasks; the table reports their paired difference.
    paired = second["paired"]["rl2_minus_bayes_optimal"]
    assert f"{second['n']}, {second['k']}: {paired['mean']:+.3f} ± {paired['se']:.3f}" in table


def test_refreshing_baselines_adds_new_ones_keeps_rl2_and_refuses_drift(tmp_path: Path) -> None:
    main(["--budget", "0", "--tasks", "6", "--only", "bandit-10-5", "--out", str(tmp_path)])
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



def test_make_bench_retrains_every_shipped_row_with_its_measured_config_and_updates() -> None:
    # The shipped table is what `make bench` reproduces: a row retrained with a bigger budget must
    # not leave the Makefile running the old one. A run can stop on its time limit before its
    # budget, so what must match is the number of updates the Makefile's budget buys, and a row
    # trained from another row's policy must start from it in `make bench` too.
    makefile = (ROOT / "Makefile").read_text()
    shipped = json.loads((ROOT / "benchmarks" / "results" / "rl2_tables.json").read_text())
    for row in (r for r in shipped["rows"] if r["rl2_trained"]):
        command = row["command"].split()
        config = command[command.index("--config") + 1]
        line = (rf"--config {config} --only {row['row']} --budget (\d+)"
                r"((?: --set \S+)*)(?: --init-from (\S+))? --merge")
        match = re.search(line, makefile)
        assert match, f"Makefile has no `make bench` line for {row['row']} with {config}"
        # A setting the line overrides must be the one the row was measured with.
        for override in match.group(2).split(" --set ")[1:]:
            key, value = override.split("=", 1)
            measured = functools.reduce(dict.__getitem__, key.split("."), row["rl2_settings"])
            mismatch = f"{row['row']}: {key}={value}, measured {measured}"
            assert type(measured)(value) == measured, mismatch
        init = row.get("rl2_init_from")
        assert match.group(3) == (init and init["checkpoint"]), f"{row['row']} starts elsewhere"
        steps_per_update = row["rl2_env_steps"] // row["rl2_updates"]
        updates = -(-int(match.group(1)) // steps_per_update)
        assert updates == row["rl2_updates"], f"make bench trains {row['row']} {updates} updates"


def test_mdp_rows_report_each_policys_return_per_episode_of_a_trial(tmp_path: Path) -> None:
    main(["--budget", "0", "--tasks", "40", "--only", "mdp-10", "--out", str(tmp_path)])
    row = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"][0]
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
    refreshed = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"][0]
    assert refreshed["per_episode"]["greedy"] == greedy


def test_bandit_rows_report_return_per_pull_over_widening_ranges(tmp_path: Path) -> None:
    main(["--budget", "0", "--tasks", "40", "--only", "bandit-10-5", "--out", str(tmp_path)])
    row = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"][0]
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


def test_a_saved_policy_re_measures_exactly_without_retraining(tmp_path: Path) -> None:
    # Every new evaluation metric used to mean retraining a row (77 minutes for mdp-10); the
    # policy a run trains is saved, and `--evaluate` reports the same row from the file alone.
    common = ["--tasks", "6", "--eval-batch", "3"]
    main(["--budget", "2000", "--hidden-size", "8", "--only", "bandit-10-5", "--log-every", "1",
          "--out", str(tmp_path / "trained"), *common])
    # A run into an --out of its own keeps its policy there, beside its table.
    saved = tmp_path / "trained" / "bandit-10-5.pt"
    main(["--evaluate", str(saved), "--out", str(tmp_path / "evaluated"), *common])
    trained, evaluated = (
        json.loads((tmp_path / name / "rl2_tables.json").read_text())["rows"][0]
        for name in ("trained", "evaluated")
    )
    assert trained["rl2_updates"] == 2
    # RL² is paired task by task with both near-optimal bandit policies.
    assert set(trained["paired"]) == {"rl2_minus_bayes_optimal", "rl2_minus_gittins"}
    measured = trained["measured"]
    assert trained["paired"]["rl2_minus_gittins"]["mean"] == pytest.approx(
        measured["rl2"]["mean"] - measured["gittins"]["mean"]
    )
    for key in ("measured", "per_episode", "paired", "rl2_env_steps", "rl2_updates",
                "rl2_train_seconds", "rl2_settings", "rl2_curve", "rl2_actions", "command"):
        assert evaluated[key] == trained[key], key
    # Tensors and plain data only, in the layout `rlmeta evaluate` reads.
    state = torch.load(saved, weights_only=True)
    assert state["runtime"]["weights_version"] == 2
    from rlmeta.run.evaluation import evaluate

    report = evaluate(saved, n_tasks=2, out_dir=tmp_path / "eval", workers=0)
    assert (report.out_dir / "adaptation.csv").is_file()


def test_only_the_shipped_table_saves_its_policies_under_runs(tmp_path: Path) -> None:
    # A short trial run into a directory of its own used to save into runs/rl2_tables and
    # silently replace the policy of the table's row.
    shipped = ROOT / "benchmarks" / "results"
    assert parse_args([]).save_dir == Path("runs") / "rl2_tables"
    assert parse_args(["--out", str(shipped)]).save_dir == Path("runs") / "rl2_tables"
    assert parse_args(["--out", str(tmp_path)]).save_dir == tmp_path
    mine = tmp_path / "mine"
    assert parse_args(["--out", str(tmp_path), "--save-dir", str(mine)]).save_dir == mine


def test_some_rows_into_the_shipped_table_need_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command printed under each row omits --merge and --out; run verbatim it used to rewrite
    # the shipped table as that one row. (A stand-in table, so a failure cannot touch the real one.)
    import benchmarks.rl2_tables as rl2_tables

    monkeypatch.setattr(rl2_tables, "TABLE_DIR", tmp_path)
    with pytest.raises(SystemExit, match="without --merge would drop its other rows"):
        main(["--budget", "0", "--only", "bandit-10-5"])
    with pytest.raises(SystemExit, match="without --merge"):
        main(["--budget", "0", "--only", "mdp-10", "--out", str(tmp_path)])
    assert not (tmp_path / "rl2_tables.json").exists()
    main(["--budget", "0", "--tasks", "4", "--only", "bandit-10-5", "--merge"])
    assert (tmp_path / "rl2_tables.json").is_file()


def test_evaluate_refuses_a_checkpoint_it_did_not_write_and_extra_settings(tmp_path: Path) -> None:
    from rlmeta.checkpoint import CheckpointError, make_checkpoint, save_checkpoint

    foreign = save_checkpoint(make_checkpoint({}, {}, 0, 0, {}), tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="neither by benchmarks.rl2_tables nor by"):
        main(["--evaluate", str(foreign), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["--evaluate", str(foreign), "--only", "mdp-10",
                    "--config", "experiments/rl2_tabular_mdp_n10.yaml"])


def test_an_rlmeta_train_run_is_measured_as_a_row(tmp_path: Path) -> None:
    # A row at the paper's scale is trained with `rlmeta train` on a cluster (workers: N), not by
    # this benchmark's one-process loop; its run directory must go into the table as it is.
    config = with_changes(
        rl2_config(ROWS[0], parse_args(["--only", ROWS[0].name])),
        iterations=20, checkpoint_every=10, workers=0, envs_per_worker=4,
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(meta_batch_size=4, trials_per_task=2, episodes_per_trial=10, hidden_size=8),
    )
    run_dir = tmp_path / "run"
    train(config, run_dir)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    common = ["--tasks", "6", "--eval-batch", "3"]
    main(["--evaluate", str(run_dir), "--out", str(tmp_path / "dir"), *common])
    main(["--evaluate", str(checkpoint_path(run_dir, 20)), "--out", str(tmp_path / "file"),
          *common])
    main(["--evaluate", str(checkpoint_path(run_dir, 10)), "--out", str(tmp_path / "early"),
          *common])
    by_dir, by_file, early = (
        json.loads((tmp_path / name / "rl2_tables.json").read_text())["rows"][0]
        for name in ("dir", "file", "early")
    )
    assert by_dir["row"] == "bandit-10-5"
    assert (by_dir["rl2_updates"], by_dir["rl2_env_steps"]) == (20, logged[-1]["env_steps"])
    assert [p["updates"] for p in by_dir["rl2_curve"]] == [10, 20]
    assert by_dir["rl2_curve"][1]["return/trial"] == logged[19]["return/trial"]
    assert by_dir["command"] == f"rlmeta train {run_dir / 'config.yaml'} --run-dir {run_dir}"
    assert by_dir["rl2_settings"]["rl2"]["meta_batch_size"] == 4
    # The directory is read at its newest checkpoint; an earlier one at its own update.
    assert by_file["measured"] == by_dir["measured"]
    assert early["rl2_updates"] == 10 and [p["updates"] for p in early["rl2_curve"]] == [10]
    # A checkpoint copied out of its run has no curve beside it and says where its config is.
    copied = tmp_path / "copied.pt"
    copied.write_bytes(checkpoint_path(run_dir, 20).read_bytes())
    _, alone, command = load_policy(copied)
    assert (alone.updates, alone.curve, command) == (20, [], f"rlmeta train (the config stored "
                                                             f"in {copied})")
    newest, earlier = (load_policy(path)[1].algorithm.get_weights()
                       for path in (run_dir, checkpoint_path(run_dir, 10)))
    assert any(not torch.equal(newest[name], earlier[name]) for name in newest)
    # The run's policy can be compared with the benchmark's own policies of the row.
    main(["--budget", "800", "--hidden-size", "8", "--only", "bandit-10-5", *common,
          "--out", str(tmp_path / "own")])
    result = compare_policies(tmp_path / "own" / "bandit-10-5.pt", run_dir, 6, 0, 3)
    assert result["row"] == "bandit-10-5"

    mdp_run = tmp_path / "mdp-12"
    train(with_changes(config, env="rlmeta/TabularMDP-v0", env_kwargs={}, iterations=1,
                  rl2=with_changes(config.rl2, episodes_per_trial=12)), mdp_run)
    with pytest.raises(ValueError, match=r"\('rlmeta/TabularMDP-v0', \{\}, 12\), no row"):
        main(["--evaluate", str(mdp_run), "--out", str(tmp_path / "x")])
    maml_run = tmp_path / "maml"
    train(with_changes(config, algorithm="maml", iterations=1), maml_run)
    with pytest.raises(ValueError, match="trains 'maml'; expected an RL² run"):
        main(["--evaluate", str(maml_run), "--out", str(tmp_path / "x")])


@pytest.mark.parametrize(("overrides", "row"), [
    ([], "mdp-10"),
    (["env=rlmeta/Bandit-v0", "env_kwargs.arms=5", "rl2.episodes_per_trial=100"], "bandit-100-5"),
    (["env=rlmeta/Bandit-v0", "env_kwargs.arms=50", "rl2.episodes_per_trial=100"],
     "bandit-100-50"),
])
def test_the_cluster_recipe_is_a_row_at_240k_steps_per_update(overrides, row) -> None:
    # As its header says: the mdp-10 row, or with three overrides an n=100 bandit row, at the
    # published reproduction's batch.
    config = load_config(ROOT / "experiments" / "rl2_tabular_mdp_n10_cluster.yaml", overrides)
    assert row_of(config, "the recipe").name == row
    horizon = make_task_env(config.env, **config.env_kwargs).unwrapped.horizon
    settings = config.rl2
    steps = settings.meta_batch_size * settings.trials_per_task * settings.episodes_per_trial
    assert steps * horizon == 240_000


def test_compare_pairs_two_saved_policies_on_validation_not_held_out_tasks(
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

    common = ["--budget", "2000", "--hidden-size", "8", "--only", "bandit-10-5", "--tasks", "4",
              "--out", str(tmp_path)]
    main([*common, "--save-dir", str(tmp_path / "a")])
    main([*common, "--save-dir", str(tmp_path / "b"), "--seed", "1"])
    base, candidate = tmp_path / "a" / "bandit-10-5.pt", tmp_path / "b" / "bandit-10-5.pt"
    result = compare_policies(base, candidate, 30, 0, 10)
    gain = result["candidate_minus_base"]["mean"]
    assert gain == pytest.approx(result["candidate"]["mean"] - result["base"]["mean"])
    assert compare_policies(base, base, 30, 0, 10)["candidate_minus_base"]["mean"] == 0.0
    main(["--compare", str(base), str(candidate), "--tasks", "30", "--eval-batch", "10"])
    assert f"candidate − base {gain:.2f}" in capsys.readouterr().out

    other = tmp_path / "c"
    main(["--budget", "2000", "--hidden-size", "8", "--only", "bandit-10-10", "--tasks", "4",
          "--out", str(tmp_path), "--save-dir", str(other)])
    with pytest.raises(ValueError, match="two policies of one row"):
        compare_policies(base, other / "bandit-10-10.pt", 4, 0, 2)
    with pytest.raises(SystemExit):
        parse_args(["--compare", str(base), str(candidate), "--evaluate", str(base)])


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
    choice = tables.choose_actions(tables.Training(None), row, 8, 0, 4)
    assert choice["chosen"] == chosen
    assert choice["mode_minus_sample"]["mean"] == pytest.approx(gain)
    # Both ways on the validation stream's env seeds, never on the held-out ones.
    _, validation_seed = tables.validation_tasks(row, 8, 0)
    assert sorted(seen) == [(validation_seed, "mode"), (validation_seed, "sample")]


def test_a_trained_row_reports_how_it_acts_and_both_held_out_figures(tmp_path: Path) -> None:
    main(["--budget", "2000", "--hidden-size", "8", "--only", "bandit-10-5", "--tasks", "30",
          "--out", str(tmp_path), "--save-dir", str(tmp_path / "policies")])
    row = json.loads((tmp_path / "rl2_tables.json").read_text())["rows"][0]
    actions = row["rl2_actions"]
    assert actions["chosen"] == ("mode" if actions["mode_minus_sample"]["mean"] > 0 else "sample")
    assert row["measured"]["rl2"] == actions["held_out"][actions["chosen"]]
    table = (tmp_path / "rl2_tables.md").read_text()
    assert "| RL² (rlmeta) | RL² acts | RL² (paper) |" in table
    assert f"| {row['measured']['rl2']['mean']:.2f} ± " in table
    assert f"→ {actions['chosen']} (held-out: sampled " in table


def test_seed_spread_measures_each_seed_as_the_row_and_records_it_beside_the_row(
    tmp_path: Path,
) -> None:
    # A row is one training seed; the spread says how far another run of its command would land.
    common = ["--budget", "2000", "--hidden-size", "8", "--only", "bandit-10-5", "--tasks", "20"]
    for seed in (0, 1, 2):
        main([*common, "--out", str(tmp_path / f"s{seed}"), "--save-dir",
              str(tmp_path / f"p{seed}"), "--set", f"seed={seed}",
              "--config", "experiments/rl2_bandit_k5_n10.yaml"])
    policies = [str(tmp_path / f"p{seed}" / "bandit-10-5.pt") for seed in (0, 1)]
    out = tmp_path / "s0"
    main(["--seed-spread", *policies, "--tasks", "20", "--out", str(out)])
    row = json.loads((out / "rl2_tables.json").read_text())["rows"][0]
    spread = row["rl2_seed_spread"]
    assert [e["seed"] for e in spread] == [0, 1]
    # Seed 0 is the row's own policy: measured the same way, it gives the row's own figure.
    assert spread[0]["held_out"] == row["measured"]["rl2"]
    assert spread[0]["acts"] == row["rl2_actions"]["chosen"]
    seed1 = json.loads((tmp_path / "s1" / "rl2_tables.json").read_text())["rows"][0]
    assert spread[1]["held_out"] == seed1["measured"]["rl2"]
    assert spread[0]["held_out"] != spread[1]["held_out"]
    means = [e["held_out"]["mean"] for e in spread]
    table = (out / "rl2_tables.md").read_text()
    assert f"10, 5: seed 0 {means[0]:.2f} (the row), seed 1 {means[1]:.2f}; mean " in table
    assert f"standard deviation {np.std(means, ddof=1):.2f} over 2 seeds" in table

    # The row's own policy must be among them, and one policy per seed.
    other_seeds = [policies[1], str(tmp_path / "p2" / "bandit-10-5.pt")]
    with pytest.raises(ValueError, match="row bandit-10-5 is seed 0 at 2,560 steps"):
        main(["--seed-spread", *other_seeds, "--tasks", "20", "--out", str(out)])
    with pytest.raises(ValueError, match=r"one policy per training seed; got seeds \[1, 1\]"):
        main(["--seed-spread", policies[1], policies[1], "--tasks", "20",
              "--out", str(tmp_path / "s1")])
    with pytest.raises(ValueError, match="at least two training seeds; got 1"):
        main(["--seed-spread", policies[0], "--out", str(out)])
    with pytest.raises(SystemExit):
        parse_args(["--seed-spread", *policies, "--compare", *policies])


def test_the_settings_line_names_the_recurrent_cell() -> None:
    from benchmarks.rl2_tables_markdown import _settings_line
    from rlmeta.rl2.config import RL2Config

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


def test_a_row_can_start_from_another_rows_policy_and_counts_its_steps(tmp_path: Path) -> None:
    # mdp-25 plays the same MDPs as mdp-10 over longer trials, so its training can start from the
    # mdp-10 policy; the table must then count the steps that trained that policy too.
    common = ["--hidden-size", "8", "--meta-batch", "2", "--trials-per-task", "1", "--tasks", "2",
              "--eval-batch", "2"]
    main(["--budget", "400", "--only", "mdp-10", "--out", str(tmp_path / "ten"), *common])
    start = tmp_path / "ten" / "mdp-10.pt"
    start_steps = torch.load(start, weights_only=True)["env_steps"]
    # No time to train: the saved policy is the starting one, unchanged.
    main(["--budget", "1000", "--max-minutes", "0", "--only", "mdp-25", "--init-from", str(start),
          "--out", str(tmp_path / "untrained"), *common])
    weights = {
        name: torch.load(path, weights_only=True)["runtime"]["algorithm"]["weights"]
        for name, path in (("start", start), ("untrained", tmp_path / "untrained" / "mdp-25.pt"))
    }
    assert weights["start"].keys() == weights["untrained"].keys()
    assert all(torch.equal(weights["start"][k], weights["untrained"][k]) for k in weights["start"])
    # So the policy it started from, measured beside it, scores exactly what it does.
    untrained = json.loads((tmp_path / "untrained" / "rl2_tables.json").read_text())["rows"][0]
    assert untrained["rl2_start"]["held_out"] == untrained["measured"]["rl2"]
    assert untrained["rl2_start"]["per_episode"] == untrained["per_episode"]["rl2"]
    assert untrained["rl2_start"]["rl2_minus_start"]["mean"] == 0.0

    main(["--budget", "1000", "--only", "mdp-25", "--init-from", str(start),
          "--out", str(tmp_path / "warm"), *common])
    row = json.loads((tmp_path / "warm" / "rl2_tables.json").read_text())["rows"][0]
    assert row["rl2_init_from"] == {"checkpoint": str(start), "row": "mdp-10",
                                    "env_steps": start_steps,
                                    "weights_sha256": weights_digest(weights["start"])}
    assert weights_digest(weights["start"]) != weights_digest(
        torch.load(tmp_path / "warm" / "mdp-25.pt", weights_only=True)["runtime"]["algorithm"][
            "weights"])
    total = row["rl2_env_steps"] + start_steps
    table = (tmp_path / "warm" / "rl2_tables.md").read_text()
    assert f"{total:,} (from mdp-10's policy)" in table
    assert f"starting from the policy `{start}`" in table
    gain = row["rl2_start"]["rl2_minus_start"]
    assert row["rl2_start"]["held_out"]["mean"] + gain["mean"] == pytest.approx(
        row["measured"]["rl2"]["mean"])
    assert f"on these held-out tasks: {gain['mean']:+.2f} ± {gain['se']:.2f}" in table
    assert "| RL² before this row's training (mdp-10's policy) |" in table
    # Started from in turn, a warm-started policy passes on every step behind it.
    warm = tmp_path / "warm" / "mdp-25.pt"
    main(["--budget", "1000", "--only", "mdp-25", "--init-from", str(warm),
          "--out", str(tmp_path / "warmer"), *common])
    again = json.loads((tmp_path / "warmer" / "rl2_tables.json").read_text())["rows"][0]
    assert again["rl2_init_from"]["env_steps"] == total
    assert (f"{again['rl2_env_steps'] + total:,} (from an earlier mdp-25 policy)"
            in (tmp_path / "warmer" / "rl2_tables.md").read_text())
    # Policies saved before the record moved to the checkpoint's top level keep it in their
    # rl2_tables entry (the stored mdp-25 row): their steps are counted all the same.
    legacy = torch.load(warm, weights_only=True)
    legacy["rl2_tables"]["init_from"] = legacy.pop("init_from")
    torch.save(legacy, tmp_path / "legacy.pt")
    assert initial_policy(tmp_path / "legacy.pt").record["env_steps"] == total
    # A starting policy whose file now holds other weights is not measured; a note says why.
    torch.save(torch.load(tmp_path / "untrained" / "mdp-25.pt", weights_only=True), warm)
    main(["--evaluate", str(tmp_path / "warmer" / "mdp-25.pt"), "--out", str(tmp_path / "warmer"),
          "--tasks", "2", "--eval-batch", "2"])
    again = json.loads((tmp_path / "warmer" / "rl2_tables.json").read_text())["rows"][0]
    assert "holds other weights than this run started from" in again["rl2_start"]["note"]
    assert again["rl2_start"]["note"] in (tmp_path / "warmer" / "rl2_tables.md").read_text()


def test_init_from_refuses_a_policy_of_another_shape_and_runs_that_do_not_train(
    tmp_path: Path,
) -> None:
    common = ["--meta-batch", "2", "--trials-per-task", "1", "--tasks", "2", "--eval-batch", "2"]
    main(["--budget", "400", "--hidden-size", "8", "--only", "mdp-10", "--out", str(tmp_path),
          *common])
    start = tmp_path / "mdp-10.pt"
    misfit = re.escape(f"--init-from: init_from {str(start)!r}: its weights do not fit this "
                       f"config's policy (misshapen ")
    with pytest.raises(SystemExit, match=misfit):
        main(["--budget", "400", "--hidden-size", "16", "--only", "mdp-25", "--init-from",
              str(start), "--out", str(tmp_path / "other"), *common])
    with pytest.raises(SystemExit):
        parse_args(["--budget", "0", "--only", "mdp-25", "--init-from", str(start)])
    with pytest.raises(SystemExit):
        parse_args(["--evaluate", str(start), "--init-from", str(start)])
