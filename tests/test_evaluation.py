"""Evaluation: confidence intervals, held-out task streams, outputs, and a run with the fakes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_train import TargetEnv, make_config

from rlmeta import checkpoint
from rlmeta.run import build, evaluation
from rlmeta.run.evaluation import (
    CSV_FILE,
    PLOT_FILE,
    STARTING_POLICY,
    Summary,
    evaluate,
    evaluation_specs,
    format_mean_ci,
    format_table,
    mean_ci95,
    read_csv,
    summarize,
    t_critical_95,
)
from rlmeta.run.train import draw_task_specs, train

# The fake algorithm of test_train: ALGORITHM_CLASSES["maml"] is pointed at it for every test.
from test_train import fake_algorithm  # noqa: F401  isort: skip


@pytest.mark.parametrize(
    "dof, quantile",
    # Printed tables of the two-sided 95% t quantile; past a few hundred dof, the normal's 1.960.
    [(1, 12.706), (3, 3.182), (9, 2.262), (10, 2.228), (35, 2.030), (121, 1.980), (200, 1.972),
     (10**9, 1.960)],
)
def test_t_quantile_matches_the_printed_tables(dof: int, quantile: float) -> None:
    assert t_critical_95(dof) == pytest.approx(quantile, abs=1e-3)


def test_t_interval_matches_hand_computed_values() -> None:
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        t_critical_95(0)
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0])
    # sd = 1.29099, sem = 0.645497, t(3) = 3.18245
    assert mean == 2.5
    assert half == pytest.approx(3.18245 * 0.645497, rel=1e-5)
    mean, half = mean_ci95([5.0])
    assert mean == 5.0 and math.isnan(half)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95([])


def test_summaries_order_steps_numerically() -> None:
    rows = [{f"return/step_{k}": float(k + i) for k in range(12)} | {"success/step_0": 1.0}
            for i in range(3)]
    keys = [s.key for s in summarize("p", rows)]
    assert keys[:3] == ["return/step_0", "return/step_1", "return/step_2"]
    assert keys[10:] == ["return/step_10", "return/step_11", "success/step_0"]
    first = summarize("p", rows)[0]
    assert (first.mean, first.tasks, first.x, first.metric) == (1.0, 3, 0, "return")
    assert Summary("p", "return/trial", 1.0, 0.1, 3).x is None


def test_held_out_tasks_differ_from_training_and_train_split_replays_it() -> None:
    config = make_config(seed=3)
    env = TargetEnv()
    test_specs = evaluation_specs(config, env, 5, "test")
    assert test_specs == evaluation_specs(config, env, 5, "test")  # deterministic
    training_rng = np.random.default_rng(config.seed)
    trained_on = [s.task for _ in range(2) for s in draw_task_specs(env, 3, training_rng)]
    assert not {t["target"] for t in trained_on} & {s.task["target"] for s in test_specs}
    train_specs = evaluation_specs(config, env, 5, "train")
    assert [s.task for s in train_specs] == trained_on[:5]
    assert [s.index for s in train_specs] == list(range(5))
    with pytest.raises(ValueError, match="must be from 1 to 100000, got 0"):
        evaluation_specs(config, env, 0, "test")


def test_meta_world_split_reaches_the_env_kwargs() -> None:
    from rlmeta.config_io import config_from_dict

    config = config_from_dict(
        {"env": "rlmeta/MetaWorld-v0", "env_kwargs": {"benchmark": "ML1", "env_name": "reach-v3"}}
    )
    assert evaluation.evaluation_config(config, "test").env_kwargs["split"] == "test"
    assert evaluation.evaluation_config(config, "train", workers=0).workers == 0
    assert "split" not in evaluation.evaluation_config(make_config(), "test").env_kwargs
    with pytest.raises(ValueError, match="split must be one of train, test, got 'val'"):
        evaluation.evaluation_config(config, "val")


def test_evaluation_holds_the_weights_in_one_learner_whatever_trained_them() -> None:
    """A learner group needs Ray workers; an evaluation in one process (`--workers 0`, or
    `eval_every` on an env with its own test split) starts none, and never updates."""
    config = make_config(workers=2, learners=2)
    for workers in (None, 0):
        evaluating = evaluation.evaluation_config(config, "test", workers=workers)
        assert evaluating.learners == 1
    runtime = build.make_runtime(evaluation.evaluation_config(config, "test", workers=0))
    runtime.shutdown()


class SplitTargetEnv(TargetEnv):
    """An env with held-out tasks of its own: evaluation chooses them with `split`."""

    task_splits = ("train", "test")

    def __init__(self, split: str = "train") -> None:
        super().__init__()
        self.split = split


def test_the_split_reaches_an_env_that_declares_task_splits() -> None:
    config = make_config(env=f"{__name__}:SplitTargetEnv")
    assert evaluation.evaluation_config(config, "test").env_kwargs == {"split": "test"}
    assert evaluation.evaluation_config(config, "train").env_kwargs == {"split": "train"}
    given = make_config(env_kwargs={"split": "train"})  # an env taking split without saying so
    assert evaluation.evaluation_config(given, "test").env_kwargs == {"split": "test"}


def test_actions_override_reaches_rl2_settings_and_is_refused_for_maml() -> None:
    from rlmeta.config_io import config_from_dict

    rl2 = config_from_dict({"algorithm": "rl2", "env": "rlmeta/Bandit-v0"})
    assert rl2.rl2.eval_actions == "sample"
    assert evaluation.evaluation_config(rl2, "test", actions="mode").rl2.eval_actions == "mode"
    assert evaluation.evaluation_config(rl2, "test").rl2.eval_actions == "sample"
    with pytest.raises(ValueError, match="actions applies to RL² runs"):
        evaluation.evaluation_config(make_config(), "test", actions="mode")


def test_evaluate_a_run_writes_csv_plot_and_beats_the_baseline(tmp_path: Path) -> None:
    train(make_config(iterations=4), tmp_path / "run")
    report = evaluate(tmp_path / "run", n_tasks=6, adapt_steps=2)
    assert report.out_dir == tmp_path / "run" / "eval-test"
    assert report.checkpoint == checkpoint.latest_checkpoint(tmp_path / "run")
    rows = read_csv(report.out_dir / CSV_FILE)
    keys = {(r["policy"], r["key"]) for r in rows}
    for policy in ("meta-learned", "random init"):
        for k in range(3):
            assert (policy, f"return/step_{k}") in keys
            assert (policy, f"success/step_{k}") in keys
    for row in rows:
        assert int(row["tasks"]) == 6
        assert float(row["ci95_low"]) <= float(row["mean"]) <= float(row["ci95_high"])
    png = (report.out_dir / PLOT_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # The fake's "adaptation" halves the distance to the target each step: returns improve.
    means = {(r["policy"], r["key"]): float(r["mean"]) for r in rows}
    assert means[("meta-learned", "return/step_2")] > means[("meta-learned", "return/step_0")]
    table = format_table(report.summaries)
    assert "return/step_2" in table and "±" in table and "random init" in table


def test_a_warm_started_run_is_shown_beside_the_policy_it_started_from(tmp_path: Path) -> None:
    train(make_config(iterations=4), tmp_path / "first")
    source = checkpoint.latest_checkpoint(tmp_path / "first")
    train(make_config(iterations=2, init_from=str(tmp_path / "first")), tmp_path / "warm")
    means = lambda report: {(s.policy, s.key): s.mean for s in report.summaries}
    warm = evaluate(tmp_path / "warm", n_tasks=4, adapt_steps=1, out_dir=tmp_path / "a")
    first = evaluate(source, n_tasks=4, adapt_steps=1, out_dir=tmp_path / "b")
    warm_means, first_means = means(warm), means(first)
    # The starting row is the first run's policy on the same tasks and seeds, adapted the same way.
    for k in (0, 1):
        key = f"return/step_{k}"
        assert warm_means[(STARTING_POLICY, key)] == first_means[("meta-learned", key)]
        assert warm_means[("random init", key)] == first_means[("random init", key)]
    assert warm_means[("meta-learned", "return/step_0")] != warm_means[
        (STARTING_POLICY, "return/step_0")
    ]
    assert not warm.notes and not first.notes
    assert STARTING_POLICY not in {s.policy for s in first.summaries}
    assert {r["policy"] for r in read_csv(warm.out_dir / CSV_FILE)} == {
        "meta-learned", STARTING_POLICY, "random init"}
    header = format_table(warm.summaries).splitlines()[0]
    assert [cell.strip() for cell in header.split(" | ")[1:]] == [
        "meta-learned", STARTING_POLICY, "random init"]

    # The source file since overwritten with other weights: no row under that name, and a note.
    state = checkpoint.load_checkpoint(source)
    state["runtime"]["algorithm"]["weights"] = {
        name: tensor + 1.0 for name, tensor in state["runtime"]["algorithm"]["weights"].items()}
    checkpoint.save_checkpoint(state, source)
    changed = evaluate(tmp_path / "warm", n_tasks=4, adapt_steps=1, out_dir=tmp_path / "c")
    assert STARTING_POLICY not in {s.policy for s in changed.summaries}
    assert changed.notes == [
        f"{STARTING_POLICY} not evaluated: {str(source)!r} holds other weights than this run "
        f"started from (weights digest differs from the checkpoint's init_from record)"]
    assert means(changed)[("meta-learned", "return/step_1")] == warm_means[
        ("meta-learned", "return/step_1")]
    shutil.rmtree(tmp_path / "first")
    gone = evaluate(tmp_path / "warm", n_tasks=4, adapt_steps=1, out_dir=tmp_path / "d")
    assert len(gone.notes) == 1 and gone.notes[0].startswith(f"{STARTING_POLICY} not evaluated: ")
    assert str(source) in gone.notes[0]


def test_baseline_is_the_runs_initial_weights(tmp_path: Path) -> None:
    config = make_config(iterations=2)
    train(config, tmp_path / "run")
    trained = evaluate(tmp_path / "run", n_tasks=4, adapt_steps=0, out_dir=tmp_path / "a")
    means = lambda report: {(s.policy, s.key): s.mean for s in report.summaries}
    trained_means = means(trained)
    assert trained_means[("meta-learned", "return/step_0")] != trained_means[
        ("random init", "return/step_0")
    ]
    # A checkpoint holding the untrained initial weights: both policies are then the same.
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "run"))
    initial = build.build_algorithm(config, "cpu").get_weights()
    state["runtime"]["algorithm"]["weights"] = initial
    path = checkpoint.save_checkpoint(state, tmp_path / "initial.pt")
    untrained = means(evaluate(path, n_tasks=4, adapt_steps=0, out_dir=tmp_path / "b"))
    assert untrained[("meta-learned", "return/step_0")] == untrained[
        ("random init", "return/step_0")
    ]
    # Same tasks and seeds for both evaluations: the baseline row does not move.
    assert untrained[("random init", "return/step_0")] == trained_means[
        ("random init", "return/step_0")
    ]


def test_a_single_value_is_shown_without_an_interval() -> None:
    assert format_mean_ci(*mean_ci95([0.4])) == "0.400 (one value, no interval)"
    assert format_mean_ci(*mean_ci95([0.0, 1.0])).startswith("0.500 ± ")
    table = format_table([Summary("meta-learned", "success/step_0", 0.25, math.nan, 1)])
    assert "nan" not in table and "0.250 (one value, no interval)" in table
