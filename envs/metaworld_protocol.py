"""Meta-World's own meta-RL evaluation protocol, for figures comparable with others' results.

`metaworld.evaluation.metalearning_evaluation` on the official vector envs
(`gym.make_vec("Meta-World/<benchmark>-<split>")`): per goal batch, the agent is reset,
adapts on `adaptation_episodes` episodes per env (`adaptation_steps` times), and is then
evaluated for `evaluation_episodes` episodes per env, which end at success; a goal counts as
solved in an episode where `info["success"]` was 1 at any step. Meta-World's settings: 10
evaluations, 1 adaptation step of 10 episodes, 3 evaluation episodes, meta batch 20, 40 test
goals per task, 500 steps per episode (its evaluation docs and `metalearning_evaluation`'s
defaults). Each evaluation is one call with `num_evals=1`: the envs keep their state between
calls, so N calls are one call with `num_evals=N`, and each call's success is one repeat.

`vector_strategy` "async" steps each env in its own process (gymnasium's `AsyncVectorEnv`, as
Meta-World offers), so the protocol uses every core; each env holds its own seeded state either
way, so both strategies give the same successes (mean returns equal to rounding).

The envs are seeded with the adapter's `benchmark_seed`: Meta-World's seed also draws the
benchmark's goals, so the official splits then hold exactly the goals the adapter's splits
hold (meta-train: the goals trained on; meta-test: the held-out ones).
`MetaWorldEnv.evaluation_protocol` names this module's `evaluate_protocol`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

DEFAULTS = {"num_evals": 10, "adaptation_steps": 1, "adaptation_episodes": 10,
            "evaluation_episodes": 3}
META_BATCH = 20  # Meta-World's suggested meta batch size for evaluation
VECTOR_STRATEGIES = ("sync", "async")  # Meta-World's make_vec options
TEST_GOALS = 40  # Meta-World's test goals per task (its evaluation docs); train: all 50
TRAIN_GOALS = 50  # every goal Meta-World draws per task
EPISODE_STEPS = 500  # Meta-World's max_path_length, the official envs' time limit


def official_splits(benchmark: str) -> tuple[str, ...]:
    """ML1 reports meta-test; the multi-task benchmarks meta-train and meta-test (Yu et al.
    2019, Table 1)."""
    return ("test",) if benchmark == "ML1" else ("train", "test")


def default_meta_batch_size(classes: int) -> int:
    """About `META_BATCH` envs, the same number per env class, each holding an equal share of
    the class's 40 test goals (Meta-World splits a class's goals evenly between its envs):
    ML1 20, ML10/ML25/ML45 test 20, ML10 train 20, ML25 train 25, ML45 train 45."""
    per_class = max(1, META_BATCH // classes)
    while TEST_GOALS % per_class:
        per_class -= 1
    return classes * per_class


def make_official_envs(
    benchmark: str,
    env_name: str | None,
    split: str,
    seed: int,
    meta_batch_size: int | None = None,
    max_episode_steps: int | None = None,
    vector_strategy: str = "sync",
) -> gym.vector.VectorEnv:
    """The official vector env of a benchmark split (`Meta-World/<benchmark>-<split>`), the
    envs spread over the split's classes as `make_ml_envs` does, stepped in this process
    (`vector_strategy` "sync") or one process per env ("async")."""
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)
    from metaworld import env_dict

    env_id = f"Meta-World/{benchmark}-{split}"
    if env_id not in gym.registry:
        known = sorted(i for i in gym.registry if i.startswith("Meta-World/ML"))
        raise ValueError(f"Meta-World has no {env_id!r}; expected a benchmark with one of "
                         f"{', '.join(known)}")
    classes = 1 if benchmark == "ML1" else len(getattr(env_dict, f"{benchmark}_V3")[split])
    goals = TEST_GOALS if split == "test" else TRAIN_GOALS
    size = default_meta_batch_size(classes) if meta_batch_size is None else meta_batch_size
    # Meta-World asserts both (make_ml_envs); checked first, the error names what fits.
    if size < 1 or size % classes or goals % (size // classes):
        raise ValueError(f"{env_id}: meta_batch_size {size} does not fit its {classes} env "
                         f"classes of {goals} goals; expected {classes} x k envs with k "
                         f"dividing {goals}")
    if vector_strategy not in VECTOR_STRATEGIES:
        raise ValueError(f"vector_strategy must be one of {', '.join(VECTOR_STRATEGIES)}, got "
                         f"{vector_strategy!r}")
    kwargs: dict[str, Any] = {"seed": seed, "meta_batch_size": size,
                              "vector_strategy": vector_strategy}
    if benchmark == "ML1":
        kwargs["env_name"] = env_name
    if split == "test":
        kwargs["total_tasks_per_cls"] = TEST_GOALS
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make_vec(env_id, **kwargs)


def evaluate_protocol(
    make_agent: Callable[[gym.vector.VectorEnv], tuple[Any, gym.vector.VectorEnv]],
    env_kwargs: Mapping[str, Any],
    num_evals: int = DEFAULTS["num_evals"],
    adaptation_steps: int = DEFAULTS["adaptation_steps"],
    adaptation_episodes: int = DEFAULTS["adaptation_episodes"],
    evaluation_episodes: int = DEFAULTS["evaluation_episodes"],
    meta_batch_size: int | None = None,
    max_episode_steps: int | None = None,
    vector_strategy: str = "sync",
) -> dict[str, Any]:
    """Meta-World's protocol on each official split of the benchmark `env_kwargs` (the
    adapter's) names. `make_agent(envs)` returns a `MetaLearningAgent` for `envs` and the vector
    env to run it on (the same, or a wrapper of it). Returns plain data: the settings and, per
    split, one row per repeat (mean success and return over the split's tasks, success per
    task)."""
    from metaworld.evaluation import metalearning_evaluation

    settings = {"num_evals": num_evals, "adaptation_steps": adaptation_steps,
                "adaptation_episodes": adaptation_episodes,
                "evaluation_episodes": evaluation_episodes}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"protocol setting {name} must be an int >= 1, got {value!r}")
    benchmark = env_kwargs.get("benchmark", "ML1")
    env_name = env_kwargs.get("env_name")
    seed = int(env_kwargs.get("benchmark_seed", 0))
    report: dict[str, Any] = {
        "protocol": "metaworld.evaluation.metalearning_evaluation",
        "benchmark": benchmark, "env_name": env_name, "seed": seed,
        "settings": {**settings, "max_episode_steps": max_episode_steps or EPISODE_STEPS,
                     "vector_strategy": vector_strategy},
        "splits": {},
    }
    for split in official_splits(benchmark):
        envs = make_official_envs(benchmark, env_name, split, seed, meta_batch_size,
                                  max_episode_steps, vector_strategy)
        try:
            agent, agent_envs = make_agent(envs)
            repeats = []
            for _ in range(num_evals):
                success, mean_return, per_task = metalearning_evaluation(
                    agent, agent_envs, num_evals=1, adaptation_steps=adaptation_steps,
                    adaptation_episodes=adaptation_episodes,
                    evaluation_episodes=evaluation_episodes)
                repeats.append({"success": float(success), "return": float(mean_return),
                                "tasks": {name: float(rate)
                                          for name, rate in sorted(per_task.items())}})
        finally:
            envs.close()
        report["splits"][split] = {
            "meta_batch_size": envs.num_envs,
            "goals_per_task": TEST_GOALS if split == "test" else TRAIN_GOALS,
            "repeats": repeats,
        }
    return report
