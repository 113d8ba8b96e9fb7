"""Train a tiny MAML run, load it, adapt to a new task and act in a plain Gymnasium loop.

    python examples/load_adapt_act.py runs/example            # ~1 minute on one core
    python examples/load_adapt_act.py runs/example --iterations 20

Prints one JSON line per stage: the mean return before adaptation and after one inner step on
the episodes the loop itself ran (docs/python-api.md explains each call).
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import rlmeta
from rlmeta.inference import Policy

CONFIG = {
    "algorithm": "maml",
    "env": "rlmeta/Navigation2D-v0",
    "workers": 0,  # sample in this process; a larger run uses Ray workers
    "envs_per_worker": 10,
    "policy": {"hidden_sizes": [64, 64]},
    "maml": {"meta_batch_size": 10, "episodes_per_task": 10, "inner_lr": 0.1},
}


def run_episode(env: gym.Env, agent: Policy, seed: int | None) -> float:
    observation, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        action = agent.act(observation)
        observation, reward, terminated, truncated, _ = env.step(action)
        agent.observe(reward, terminated, truncated)  # RL² reads it; MAML records the episode
        total += float(reward)
        if terminated or truncated:
            return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()

    rlmeta.train(CONFIG, args.run_dir, overrides={"iterations": args.iterations})
    policy = rlmeta.load(args.run_dir)  # the newest checkpoint

    env = gym.make(CONFIG["env"])
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(123))[0]  # a goal never trained on
    env.unwrapped.set_task(task)
    agent = policy.reset(seed=0)
    for inner_steps in range(2):
        returns = [run_episode(env, agent, seed=1000 * inner_steps + j) for j in range(10)]
        print(json.dumps({"inner_steps": inner_steps, "mean_return": float(np.mean(returns))}))
        if inner_steps == 0:
            agent = agent.adapt()  # one inner gradient step on the 10 episodes just run
    # Or let the policy sample its own episodes: policy.adapt(env, task=task) -> adapted policy.


if __name__ == "__main__":
    main()
