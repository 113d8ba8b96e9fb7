"""Meta-World's own meta-RL protocol (`metaworld.evaluation.metalearning_evaluation`) through
rlmeta: the official envs observe what the adapter does; Meta-World's expert scores ~100%
through rlmeta's agent and as a plain MetaLearningAgent alike; a random policy scores low; tiny
MAML and RL² checkpoints go through `rlmeta evaluate` and write the protocol's files.

Settings are tiny (one repeat, one adaptation episode, short episodes, 4 envs): these check the
wiring, not a policy's figures."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("metaworld")
# Meta-World's experts warn that their gains are high; the env clips their actions.
pytestmark = pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high")

from metaworld.evaluation import metalearning_evaluation  # noqa: E402
from metaworld.policies import SawyerReachV3Policy  # noqa: E402

from rlmeta.config_io import load_config  # noqa: E402
from rlmeta.inference import EpisodeRecorder  # noqa: E402
from rlmeta.run.cli import main  # noqa: E402
from rlmeta.run.evaluation import evaluate  # noqa: E402
from rlmeta.run.protocol import CSV_FILE, JSON_FILE, read_protocol_json  # noqa: E402
from rlmeta.run.train import train  # noqa: E402
from rlmeta.tasks import evaluation_protocol  # noqa: E402
from rlmeta.vector_agent import AgentFeedback, PolicyAgent  # noqa: E402
from rlmeta_envs.metaworld_adapter import MetaWorldEnv  # noqa: E402
from rlmeta_envs.metaworld_protocol import (  # noqa: E402
    default_meta_batch_size,
    evaluate_protocol,
    make_official_envs,
)

REPO = Path(__file__).resolve().parents[1]
# Measured: the expert solved every goal of 4 envs within 100 steps and none within 50.
EPISODE_STEPS = 100
TINY = {"num_evals": 1, "adaptation_episodes": 1, "evaluation_episodes": 2,
        "meta_batch_size": 4, "max_episode_steps": EPISODE_STEPS}


@pytest.fixture(scope="module")
def official() -> Any:
    envs = make_official_envs("ML1", "reach-v3", "test", seed=0, meta_batch_size=4,
                              max_episode_steps=EPISODE_STEPS)
    yield envs
    envs.close()


# ML observations hide the goal (zeros in obs[36:39]) and Meta-World's experts read it there.
# The test harness gives the expert the goal of the env it acts in, read from that env
# (`_target_pos`); the policy under test still receives the official observation unchanged.
def _expert_action(expert: SawyerReachV3Policy, env: Any, observation: np.ndarray) -> np.ndarray:
    seen = np.array(observation, dtype=np.float64)
    seen[36:39] = env.unwrapped._target_pos
    return expert.get_action(seen).astype(np.float32)


class ScriptedPolicy:
    """An rlmeta `Policy` (rlmeta.inference) acting by Meta-World's expert, or uniformly at
    random with `rng`: nothing to adapt."""

    adapts_while_acting = True

    def __init__(self, env: Any, rng: np.random.Generator | None = None) -> None:
        self.env, self.rng, self.expert = env, rng, SawyerReachV3Policy()
        self._recorder = EpisodeRecorder()

    def reset(self, seed: int | None = None) -> ScriptedPolicy:
        self._recorder = EpisodeRecorder()
        return self

    def adapt(self, env=None, task=None, episodes=None, steps=None) -> ScriptedPolicy:
        return self

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        if self.rng is None:
            action = _expert_action(self.expert, self.env, observation)
        else:
            action = self.rng.uniform(-1, 1, 4).astype(np.float32)
        self._recorder.on_act(observation, action, 0.0)
        return action

    def observe(self, reward: float, terminated: bool, truncated: bool) -> None:
        self._recorder.on_observe(reward, terminated, truncated)

    def episode_seed(self, episode: int) -> None:
        return None

    @property
    def episodes(self) -> list:
        return list(self._recorder.finished)


class PlainExpertAgent:
    """Meta-World's expert as a bare MetaLearningAgent: no rlmeta in between."""

    def __init__(self, envs: Any) -> None:
        self.envs, self.expert = envs, SawyerReachV3Policy()

    def init(self) -> None: ...
    def adapt(self) -> None: ...
    def step(self, timestep: Any) -> None: ...
    def reset(self, env_mask: np.ndarray) -> None: ...

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        return np.stack([_expert_action(self.expert, env, obs)
                         for env, obs in zip(self.envs.envs, observations, strict=True)])

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.eval_action(observations), {}


def _scripted_agent(envs: Any, random: bool = False) -> tuple[PolicyAgent, AgentFeedback]:
    policies = [ScriptedPolicy(env, np.random.default_rng(i) if random else None)
                for i, env in enumerate(envs.envs)]
    agent = PolicyAgent(policies)
    return agent, AgentFeedback(envs, agent)


def test_official_observation_is_the_adapters_for_the_same_goal(official: Any) -> None:
    official.call("sample_tasks")
    inner = official.envs[0].unwrapped
    adapter = MetaWorldEnv(benchmark="ML1", env_name="reach-v3", split="test")
    goals = [pickle.loads(task.data)["rand_vec"]
             for task in adapter._split_tasks()["reach-v3"]]
    index = next(i for i, goal in enumerate(goals) if np.array_equal(goal, inner._last_rand_vec))
    adapter.set_task({"env_name": "reach-v3", "index": index})
    mine, _ = adapter.reset(seed=3)
    theirs, _ = official.envs[0].reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 4))
    for action in actions:
        assert mine.dtype == theirs.dtype == np.float64  # policies cast to float32 in act
        np.testing.assert_array_equal(mine, theirs)
        assert not mine[36:39].any()  # the goal is hidden in both
        mine, my_reward, *_ = adapter.step(action)
        theirs, their_reward, *_ = official.envs[0].step(action)
        assert my_reward == their_reward
    adapter.close()


def test_expert_scores_full_through_rlmeta_and_as_a_plain_agent_alike(official: Any) -> None:
    settings = {"num_evals": 1, "adaptation_episodes": 1, "evaluation_episodes": 2}
    agent, envs = _scripted_agent(official)
    through_rlmeta, _, per_task = metalearning_evaluation(agent, envs, **settings)
    plain, _, _ = metalearning_evaluation(PlainExpertAgent(official), official, **settings)
    assert through_rlmeta == plain == 1.0
    assert per_task == {"reach-v3": 1.0}


def test_random_policy_scores_low_through_the_protocol(official: Any) -> None:
    # Measured on ML1-test reach-v3 (seed 0, 20 envs): uniform random actions succeed in 1 of
    # 80 episodes of 500 steps, and in none of 200-step ones (protocol: 0, 0, 0 over 3 repeats).
    # Over 500 steps the protocol scored 0, 1/3, 1/3: it counts the first 3 episodes to end
    # among the 20 envs, and a success ends one (docs/metaworld.md). Here: 100 steps, seeded.
    agent, envs = _scripted_agent(official, random=True)
    success, _, per_task = metalearning_evaluation(
        agent, envs, num_evals=1, adaptation_episodes=1, evaluation_episodes=2)
    assert success == 0.0 and per_task == {"reach-v3": 0.0}


def test_async_envs_give_the_figures_of_sync_ones() -> None:
    # Random policies (seeded per env) read nothing from the env objects, which live in other
    # processes under "async"; equal returns mean every episode played out the same.
    def random_agent(envs: Any) -> tuple[PolicyAgent, AgentFeedback]:
        agent = PolicyAgent([ScriptedPolicy(None, np.random.default_rng(i))
                             for i in range(envs.num_envs)])
        return agent, AgentFeedback(envs, agent)

    kwargs = {"benchmark": "ML1", "env_name": "reach-v3"}
    settings = {**TINY, "num_evals": 2, "max_episode_steps": 20}
    sync = evaluate_protocol(random_agent, kwargs, **settings)
    parallel = evaluate_protocol(random_agent, kwargs, **settings, vector_strategy="async")
    assert parallel["settings"].pop("vector_strategy") == "async"
    assert sync["settings"].pop("vector_strategy") == "sync"
    assert parallel["settings"] == sync["settings"]
    # Successes are equal; a mean return may differ in the last bits (the order it is summed).
    ours, theirs = (run["splits"]["test"]["repeats"] for run in (parallel, sync))
    outcomes = [[(r["success"], r["tasks"]) for r in repeats] for repeats in (ours, theirs)]
    assert outcomes[0] == outcomes[1]
    assert [r["return"] for r in ours] == pytest.approx([r["return"] for r in theirs], rel=1e-9)
    assert theirs[0]["return"] != theirs[1]["return"]  # two goal batches, not one repeated


class RecordingPolicy(ScriptedPolicy):
    """Adapts by a step on recorded episodes (as MAML does), counting them."""

    adapts_while_acting = False

    def adapt(self, env=None, task=None, episodes=None, steps=None) -> RecordingPolicy:
        adapted = RecordingPolicy(self.env, self.rng)
        adapted.adapted_on = len(episodes)
        return adapted


def test_agent_adapts_only_policies_that_step_on_episodes_and_observes_evaluation(
    official: Any,
) -> None:
    # Random actions never succeed within the short episodes here, so every env plays exactly
    # its episodes to the time limit, in step with the others.
    envs, rng = official.envs, np.random.default_rng(0)
    policies = [RecordingPolicy(envs[0], rng), RecordingPolicy(envs[1], rng),
                ScriptedPolicy(envs[2], rng), ScriptedPolicy(envs[3], rng)]
    agent = PolicyAgent(policies)
    metalearning_evaluation(agent, AgentFeedback(official, agent), num_evals=1,
                            adaptation_episodes=2, evaluation_episodes=1)
    adapted = agent.policies
    assert [getattr(p, "adapted_on", None) for p in adapted] == [2, 2, None, None]
    # Policies that adapt while acting carry on (the same object: an RL² trial runs on).
    assert adapted[2] is policies[2] and adapted[3] is policies[3]
    # Evaluation steps reached the policies through AgentFeedback: the evaluation episode is
    # recorded after the adaptation episodes (2 + 1) or after the adapt step (1).
    assert [len(p.episodes) for p in adapted] == [1, 1, 3, 3]
    assert all(len(e.rewards) == EPISODE_STEPS and e.truncated for e in adapted[0].episodes)
    agent.init()
    assert agent.policies == policies and not any(p.episodes for p in policies)


def test_policy_agent_refuses_shared_policies_and_a_missing_feedback(official: Any) -> None:
    policy = ScriptedPolicy(official.envs[0])
    with pytest.raises(ValueError, match="distinct policy object per env"):
        PolicyAgent([policy, policy])
    agent = PolicyAgent([ScriptedPolicy(env) for env in official.envs])
    observations, _ = official.reset()
    agent.eval_action(observations)
    official.step(np.zeros((4, 4)))
    with pytest.raises(RuntimeError, match="wrap the vector env in AgentFeedback"):
        agent.eval_action(observations)


def _tiny_run(tmp_path: Path, experiment: str, overrides: list[str]) -> Path:
    config = load_config(REPO / "experiments" / experiment, [
        "iterations=1", "workers=0", "eval_tasks=2", "envs_per_worker=2",
        "env_kwargs={benchmark: ML1, env_name: reach-v3, horizon: 10}", *overrides])
    train(config, tmp_path / "run")
    return tmp_path / "run"


def _check_protocol_files(out: Path) -> dict[str, Any]:
    data = read_protocol_json(out / JSON_FILE)
    assert list(data["splits"]) == ["test"]
    assert data["settings"]["num_evals"] == 1 and data["settings"]["eval_actions"] == "mode"
    [mean] = [s for s in data["summaries"] if s["task"] == "all"]
    assert 0.0 <= mean["success"] <= 1.0 and mean["repeats"] == 1
    rows = (out / CSV_FILE).read_text().splitlines()
    assert rows[0].startswith("split,task,success,ci95_low,ci95_high,repeats")
    assert [row.split(",")[:2] for row in rows[1:]] == [["test", "all"], ["test", "reach-v3"]]
    return data


def test_maml_checkpoint_reports_the_protocol_beside_its_curve(tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, "maml_metaworld_ml1_reach.yaml", [
        "maml.meta_batch_size=2", "maml.episodes_per_task=2"])
    report = evaluate(run, adapt_steps=1, out_dir=tmp_path / "eval",
                      protocol={**TINY, "max_episode_steps": 10})
    assert (tmp_path / "eval/adaptation.csv").exists()
    assert report.protocol is not None and report.protocol.summaries[0].repeats == 1
    _check_protocol_files(tmp_path / "eval")


def test_rl2_checkpoint_goes_through_rlmeta_evaluate(tmp_path: Path, capsys) -> None:
    run = _tiny_run(tmp_path, "rl2_halfcheetah_vel.yaml", [
        "env=rlmeta/MetaWorld-v0", "rl2.meta_batch_size=2", "rl2.minibatches=1",
        "rl2.epochs=1"])
    status = main(["evaluate", str(run), "--out", str(tmp_path / "eval"),
                   "--protocol-evals", "1", "--protocol-adaptation-episodes", "2",
                   "--protocol-evaluation-episodes", "1", "--protocol-meta-batch-size", "4",
                   "--protocol-max-episode-steps", "10"])
    assert status == 0
    out = capsys.readouterr().out
    assert "metaworld.evaluation.metalearning_evaluation" in out and "meta-test" in out
    data = _check_protocol_files(tmp_path / "eval")
    assert data["settings"]["adaptation_episodes"] == 2


def test_cli_protocol_options_are_the_protocols_settings() -> None:
    from rlmeta.run.cli import _protocol_settings, build_parser

    args = build_parser().parse_args(["evaluate", "run", "--protocol-evals", "0",
                                      "--protocol-actions", "sample"])
    assert _protocol_settings(args) == {"num_evals": 0, "eval_actions": "sample"}
    args = build_parser().parse_args(["evaluate", "run", "--protocol-vector", "async"])
    assert _protocol_settings(args) == {"vector_strategy": "async"}


def test_the_env_declares_its_protocol_and_the_default_meta_batch_fits_each_split() -> None:
    assert evaluation_protocol("rlmeta/MetaWorld-v0") is evaluate_protocol
    assert evaluation_protocol("rlmeta/Navigation2D-v0") is None
    # ML1; ML10 train; ML10/ML25/ML45 test; ML25 train; ML45 train (classes per split).
    assert [default_meta_batch_size(n) for n in (1, 10, 5, 25, 45)] == [20, 20, 20, 25, 45]
    with pytest.raises(ValueError, match="meta_batch_size 3 does not fit its 1 env classes"):
        make_official_envs("ML1", "reach-v3", "test", seed=0, meta_batch_size=3)
    with pytest.raises(ValueError, match="Meta-World has no 'Meta-World/ML2-test'"):
        make_official_envs("ML2", None, "test", seed=0)
    with pytest.raises(ValueError, match="vector_strategy must be one of sync, async"):
        make_official_envs("ML1", "reach-v3", "test", seed=0, vector_strategy="threads")
