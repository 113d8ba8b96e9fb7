"""RL² learns to explore a 2-armed Bernoulli bandit within a 10-pull trial (CI-sized).

A uniformly random policy expects 10 × mean(arm means) per trial on a task, 5.0 on average over
tasks with means U[0, 1]. The trained policy is compared with that expectation on the same
held-out tasks (a paired difference, so the spread of task difficulty cancels).

Measured while writing this test (same budget and evaluation): training seeds 0, 1, 2 gave mean
paired improvements of +0.64, +0.64, +0.51 per trial (spread across seeds about 0.08), each with
an evaluation standard error of about 0.08, in 27-39 s on one busy core. The assertion asks for
+0.35 (over four times either noise) and four standard errors of this run's evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlmeta.algorithm import TaskSpec
from rlmeta.config import ExperimentConfig, PolicyConfig
from rlmeta.rl2 import RL2Algorithm
from rlmeta.rl2.config import RL2Config
from rlmeta.tasks import make_task_env, sample_tasks

ITERATIONS = 150
EVAL_TASKS = 200


def bandit_config(seed: int) -> ExperimentConfig:
    return ExperimentConfig(
        algorithm="rl2",
        env="rlmeta/Bandit-v0",
        env_kwargs={"arms": 2},
        seed=seed,
        policy=PolicyConfig(hidden_sizes=[], activation="tanh"),
        rl2=RL2Config(
            meta_batch_size=16,
            trials_per_task=8,
            episodes_per_trial=10,
            hidden_size=32,
            lr=5e-3,
            epochs=4,
            minibatches=4,
            entropy_coef=0.01,
        ),
    )


def paired_improvement(seed: int) -> np.ndarray:
    """Per held-out task: trained RL² trial return minus the random policy's expectation."""
    config = bandit_config(seed)
    envs = [make_task_env(config.env, **config.env_kwargs) for _ in range(8)]
    torch.manual_seed(seed)
    algorithm = RL2Algorithm(config, envs[0].observation_space, envs[0].action_space)
    rng = np.random.default_rng(seed)
    for iteration in range(ITERATIONS):
        tasks = sample_tasks(envs[0], config.rl2.meta_batch_size, rng)
        results = [
            algorithm.run_task(envs, TaskSpec(i, task, int(rng.integers(2**31))), iteration)
            for i, task in enumerate(tasks)
        ]
        algorithm.update(results)
    # Held-out tasks come from a generator the training loop never touches.
    eval_tasks = sample_tasks(envs[0], EVAL_TASKS, np.random.default_rng(10_000 + seed))
    improvements = []
    for i, task in enumerate(eval_tasks):
        metrics = algorithm.evaluate_task(envs, TaskSpec(i, task, 50_000 + i), adapt_steps=0)
        random_expectation = config.rl2.episodes_per_trial * float(np.mean(task["means"]))
        improvements.append(metrics["return/trial"] - random_expectation)
    return np.asarray(improvements)


@pytest.mark.slow
def test_rl2_beats_random_on_two_armed_bandits():
    improvements = paired_improvement(seed=0)
    mean = improvements.mean()
    standard_error = improvements.std(ddof=1) / np.sqrt(len(improvements))
    assert mean > 0.35, f"RL² improved on random by only {mean:.3f} per trial"
    assert mean > 4 * standard_error, f"improvement {mean:.3f} within noise ({standard_error:.3f})"
