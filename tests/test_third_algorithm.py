"""A third algorithm is one module plus one registry line: a multi-task REINFORCE learner built
from the core's building blocks, registered with `register_algorithm` and trained, evaluated and
refused bad settings through the CLI exactly as MAML and RL² are. Also the boundaries that make
that true: the driving code tests no algorithm names, and the core imports no algorithm."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import pytest
import torch

from rlmeta import checkpoint
from rlmeta.algorithm import TaskResult, TaskSpec, Weights
from rlmeta.config import (
    ConfigError,
    Discount,
    ExperimentConfig,
    PositiveFloat,
    PositiveInt,
    Settings,
)
from rlmeta.config_io import config_from_dict
from rlmeta.policies import FeedForwardActor, make_policy
from rlmeta.returns import discounted_returns
from rlmeta.rollout import sample_rollout
from rlmeta.run import build
from rlmeta.run.cli import main

ROOT = Path(__file__).resolve().parents[1]


class ReinforceConfig(Settings):
    """Multi-task REINFORCE: one policy for every task, no adaptation."""

    meta_batch_size: PositiveInt = 4
    """Tasks per iteration."""
    episodes_per_task: PositiveInt = 2
    """Episodes sampled per task per iteration."""
    lr: PositiveFloat = 0.01
    """Adam learning rate."""
    gamma: Discount = 0.99
    """Discount factor."""


class ReinforceAlgorithm:
    """REINFORCE (Williams 1992) with per-iteration standardised returns, over all tasks."""

    config_section: ClassVar[str] = "reinforce"
    settings_model: ClassVar[type[Settings]] = ReinforceConfig
    evaluation_axis: ClassVar[str] = "episode"

    @classmethod
    def meta_batch_size(cls, config: ExperimentConfig) -> int:
        return config.reinforce.meta_batch_size

    @classmethod
    def best_metric(cls, config: ExperimentConfig) -> str:
        return "return/mean"

    @classmethod
    def progress_keys(cls, config: ExperimentConfig) -> tuple[str, ...]:
        return ("return/mean",)

    @classmethod
    def tasks_per_call(cls, config: ExperimentConfig) -> int:
        return 1

    @classmethod
    def default_adapt_steps(cls, config: ExperimentConfig) -> int:
        return 0

    @classmethod
    def with_eval_actions(cls, config: ExperimentConfig, actions: str) -> ExperimentConfig:
        raise ValueError("actions: REINFORCE evaluation always samples")

    def __init__(
        self,
        config: ExperimentConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: str = "cpu",
    ) -> None:
        self.settings = config.reinforce
        self.policy = make_policy(observation_space, action_space, config.policy)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.settings.lr)

    def get_weights(self) -> Weights:
        return {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}

    def set_weights(self, weights: Weights) -> None:
        self.policy.load_state_dict(weights)

    def _sample(self, envs: list[gym.Env], spec: TaskSpec, version: int) -> Any:
        actor = FeedForwardActor(self.policy, dict(self.policy.named_parameters()),
                                 torch.Generator().manual_seed(spec.seed))
        return sample_rollout(envs, actor, num_sequences=self.settings.episodes_per_task,
                              seed=spec.seed, task=spec.task, weights_version=version)

    def run_task(self, envs: list[gym.Env], spec: TaskSpec, weights_version: int) -> TaskResult:
        rollout = self._sample(envs, spec, weights_version)
        return TaskResult(spec.index, spec.task, spec.seed, weights_version, [rollout],
                          {"return/mean": rollout.mean_return()}, rollout.num_steps)

    def update(self, results: list[TaskResult]) -> dict[str, float]:
        losses = []
        for result in results:
            rollout = result.rollouts[0]
            mask = torch.as_tensor(rollout.mask)
            returns = discounted_returns(torch.as_tensor(rollout.rewards),
                                         torch.as_tensor(rollout.dones), mask, self.settings.gamma)
            real = mask > 0
            advantages = (returns - returns[real].mean()) / (returns[real].std() + 1e-8)
            log_probs = self.policy.distribution(torch.as_tensor(rollout.observations)).log_prob(
                torch.as_tensor(rollout.actions))
            losses.append(-(log_probs * advantages * mask).sum() / mask.sum())
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def evaluate_task(
        self, envs: list[gym.Env], spec: TaskSpec, adapt_steps: int
    ) -> dict[str, float]:
        return {"return/episode_0": self._sample(envs, spec, 0).mean_return()}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.get_weights(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])


@pytest.fixture
def reinforce(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry as it is plus REINFORCE, for one test (restored afterwards)."""
    monkeypatch.setattr(build, "ALGORITHM_CLASSES", dict(build.ALGORITHM_CLASSES))
    build.register_algorithm("reinforce", f"{__name__}:ReinforceAlgorithm")  # the one line


CONFIG = """\
algorithm: reinforce
env: rlmeta/Navigation2D-v0
env_kwargs: {horizon: 10}
iterations: 3
checkpoint_every: 2
workers: 0
envs_per_worker: 2
eval_tasks: 2
seed: 3
policy: {hidden_sizes: [8]}
reinforce: {meta_batch_size: 3, episodes_per_task: 2, lr: 0.01}
"""


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_registered_third_algorithm_trains_and_evaluates_through_the_cli(
    reinforce: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "reinforce.yaml"
    path.write_text(CONFIG)
    run = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", str(path), "--set", "reinforce.lr=0.02",
                               "--run-dir", str(run))
    assert status == 0, err
    assert "training reinforce" in err and "return/mean" in out

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    assert all("return/mean" in row and "loss" in row for row in rows)
    assert checkpoint.best_path(run).exists()
    latest = checkpoint.latest_checkpoint(run)
    assert latest.name == "ckpt_000003.pt"
    saved = torch.load(latest, weights_only=True)  # the config is plain data
    assert saved["config"]["reinforce"] == {"meta_batch_size": 3, "episodes_per_task": 2,
                                            "lr": 0.02, "gamma": 0.99}
    assert "maml" in saved["config"] and "rl2" in saved["config"]  # every section, as before
    best = max(row["return/mean"] for row in rows)
    assert torch.load(checkpoint.best_path(run), weights_only=True)["best_score"] == best

    status, out, err = run_cli(capsys, "evaluate", str(run), "--tasks", "2")
    assert status == 0, err
    assert "return/episode_0" in out and "random init" in out
    assert (run / "eval-test" / "adaptation.png").exists()

    status, _, err = run_cli(capsys, "evaluate", str(run), "--actions", "mode")
    assert status == 2
    assert err.strip() == "rlmeta evaluate: error: actions: REINFORCE evaluation always samples"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("reinforce.lr=-1", "config key 'reinforce.lr' must be > 0, got -1"),
        ("reinforce.lr=.nan", "config key 'reinforce.lr' must be a finite number, got nan"),
        ("reinforce.lrr=0.1", "unknown config key 'reinforce.lrr'; did you mean 'reinforce.lr'?"),
        ("reinforce.gamma=2", "config key 'reinforce.gamma' must be > 0 and <= 1, got 2"),
    ],
)
def test_its_settings_are_validated_like_the_built_in_ones(
    reinforce: None, tmp_path: Path, capsys: pytest.CaptureFixture, override: str, message: str
) -> None:
    path = tmp_path / "reinforce.yaml"
    path.write_text(CONFIG)
    status, _, err = run_cli(capsys, "train", str(path), "--set", override,
                             "--run-dir", str(tmp_path / "run"))
    assert status == 2
    assert err.splitlines() == [f"rlmeta train: error: {message}"]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"algorithm": "reinforce", **_as_data(override)})


def _as_data(override: str) -> dict[str, Any]:
    key, value = override.split("=")
    section, name = key.split(".")
    return {section: {name: float(value.lstrip("."))}}


def test_sections_follow_the_registry(reinforce: None) -> None:
    config = ExperimentConfig(algorithm="reinforce")
    assert config.reinforce == ReinforceConfig()
    keys = list(config.model_dump())
    start = keys.index("policy")
    assert keys[start:start + 4] == ["policy", "maml", "rl2", "reinforce"]
    with pytest.raises(ConfigError, match="'algorithm' must be one of maml, rl2, reinforce"):
        ExperimentConfig(algorithm="reinforc")


def test_an_unregistered_algorithm_and_its_section_are_unknown() -> None:
    assert "reinforce" not in build.ALGORITHM_CLASSES
    with pytest.raises(ConfigError, match="'algorithm' must be one of maml, rl2, got 'reinforce'"):
        ExperimentConfig(algorithm="reinforce")
    with pytest.raises(ConfigError, match="unknown config key 'reinforce'"):
        config_from_dict({"reinforce": {"lr": 0.1}})


def test_register_algorithm_wants_module_and_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "ALGORITHM_CLASSES", dict(build.ALGORITHM_CLASSES))
    with pytest.raises(ValueError, match="must be 'module:Class'"):
        build.register_algorithm("x", "no_colon")
