"""Videos of adaptation: env pictures without OpenGL, MuJoCo and Meta-World through OSMesa,
which episode shows which evaluation point, and written mp4s decoded frame by frame."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rlmeta_envs  # noqa: F401  registers the families
from rlmeta import tasks
from rlmeta.config_io import load_config
from rlmeta.run import build
from rlmeta.run.evaluation import evaluate, evaluation_specs
from rlmeta.run.train import train
from rlmeta.run.video import (
    CAPTION_HEIGHT,
    HOLD_S,
    INDEX_FILE,
    record_videos,
    shown_episodes,
)

imageio = pytest.importorskip("imageio.v2")
REPO = Path(__file__).resolve().parent.parent


def decode(path: Path) -> list[np.ndarray]:
    with imageio.get_reader(str(path)) as reader:
        return [np.asarray(frame) for frame in reader]


@pytest.mark.parametrize(
    "env_id, kwargs, action",
    [("rlmeta/Navigation2D-v0", {}, np.array([0.1, 0.05], dtype=np.float32)),
     ("rlmeta/Bandit-v0", {"arms": 4}, 2),
     ("rlmeta/TabularMDP-v0", {}, 1)],
)
def test_simple_families_draw_their_state_with_numpy(env_id, kwargs, action) -> None:
    env = tasks.make_task_env(env_id, render_mode="rgb_array", **kwargs)
    env.reset(seed=0)
    before = env.render()
    env.step(action)
    after = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    assert before.shape == after.shape
    assert (before != after).any(), "the picture must change when the agent acts"
    # Without a render mode nothing is drawn (and stepping keeps no path).
    plain = tasks.make_task_env(env_id, **kwargs)
    plain.reset(seed=0)
    assert plain.render() is None


def test_a_render_mode_the_env_lacks_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="render_mode must be None or one of 'rgb_array'"):
        tasks.make_task_env("rlmeta/Navigation2D-v0", render_mode="ansi")


def test_navigation_draws_goal_and_path_where_they_are() -> None:
    env = tasks.make_task_env("rlmeta/Navigation2D-v0", render_mode="rgb_array")
    env.unwrapped.set_task({"goal": [0.5, 0.5]})
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([-0.1, 0.0], dtype=np.float32))
    image = env.render()
    size = image.shape[0]
    green = (image == (44, 160, 44)).all(axis=-1)
    rows, cols = np.nonzero(green)
    # The view spans twice the goal range, [-1, 1]: goal (0.5, 0.5) is up and to the right.
    assert abs(cols.mean() - 0.75 * size) < 3 and abs(rows.mean() - 0.25 * size) < 3
    red = (image == (214, 39, 40)).all(axis=-1)
    rows, cols = np.nonzero(red)
    assert abs(cols.mean() - 0.35 * size) < 3 and abs(rows.mean() - 0.5 * size) < 3
    assert (image == (31, 119, 180)).all(axis=-1).sum() > 50  # the path from the origin


def test_points_are_first_trial_episodes_or_first_episode_of_each_stage() -> None:
    # RL²: 3 trials of 4 episodes, each trial one seeded reset then three unseeded ones.
    trial = [True, False, False, False]
    assert shown_episodes(trial * 3, 4) == [0, 1, 2, 3]
    # MAML: 3 stages (0, 1, 2 inner steps) of 5 single-episode sequences.
    assert shown_episodes([True] * 15, 3) == [0, 5, 10]
    assert shown_episodes([True], 1) == [0]
    with pytest.raises(ValueError, match="do not split into 4"):
        shown_episodes([True] * 6, 4)


def _check_video(out: Path, points: int) -> None:
    index = json.loads((out / INDEX_FILE).read_text())
    assert index, "videos.json lists the videos"
    for entry in index:
        frames = decode(out / entry["file"])
        segments = entry["segments"]
        assert len(segments) == points
        assert len(frames) == sum(s["frames"] for s in segments)
        height, width = frames[0].shape[:2]
        assert width >= 320 and height > CAPTION_HEIGHT and all(
            f.shape == frames[0].shape for f in frames)
        starts = np.cumsum([0] + [s["frames"] for s in segments])[:-1]
        # Each segment is captioned with its own label: the caption band differs between them.
        bands = [frames[i][:CAPTION_HEIGHT].astype(int) for i in starts]
        assert all(np.abs(a - b).mean() > 0.5 for a, b in zip(bands, bands[1:], strict=False))
        # The picture moves within a segment.
        first = frames[starts[0]][CAPTION_HEIGHT:].astype(int)
        last = frames[starts[0] + segments[0]["frames"] - 1][CAPTION_HEIGHT:].astype(int)
        assert np.abs(first - last).mean() > 0.1


@pytest.mark.slow
def test_evaluate_writes_before_and_after_videos_for_maml(tmp_path: Path) -> None:
    config = load_config(REPO / "experiments/maml_navigation2d.yaml", [
        "iterations=1", "workers=0", "maml.meta_batch_size=2", "maml.episodes_per_task=2",
        "env_kwargs={horizon: 20}", "envs_per_worker=2"])
    train(config, tmp_path / "run")
    report = evaluate(tmp_path / "run", n_tasks=3, adapt_steps=2, out_dir=tmp_path / "eval",
                      video=2)
    assert [p.name for p in report.videos] == ["task_000.mp4", "task_001.mp4"]
    index = json.loads((tmp_path / "eval/videos" / INDEX_FILE).read_text())
    assert [s["label"].split(",")[0] for s in index[0]["segments"]] == [
        "inner gradient steps: 0", "inner gradient steps: 1", "inner gradient steps: 2"]
    # Stages of episodes_per_task=2 fresh episodes: each segment is its stage's first episode.
    assert [s["episode"] for s in index[0]["segments"]] == [0, 2, 4]
    _check_video(tmp_path / "eval/videos", points=3)


@pytest.mark.slow
def test_rl2_video_shows_each_episode_of_one_trial(tmp_path: Path) -> None:
    config = load_config(REPO / "experiments/rl2_tabular_mdp_n10.yaml", [
        "iterations=1", "workers=0", "rl2.meta_batch_size=2", "rl2.trials_per_task=2",
        "rl2.episodes_per_trial=3", "envs_per_worker=4", "rl2.minibatches=1"])
    env = build.build_env(config)
    specs = evaluation_specs(config, env, 1, "test")
    algorithm = build.build_algorithm(config, "cpu")
    paths = record_videos(config, algorithm, specs, 0, "episode in the trial", tmp_path)
    assert len(paths) == 1
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert [s["episode"] for s in index[0]["segments"]] == [0, 1, 2]
    # One frame per step of the horizon-10 MDP plus the reset's, then the last one held.
    hold = max(round(HOLD_S * index[0]["fps"]), 1)
    assert all(s["frames"] == 10 + 1 + hold for s in index[0]["segments"])
    _check_video(tmp_path, points=3)


_MUJOCO_SCRIPT = """
import sys
from pathlib import Path
from rlmeta.config_io import load_config
from rlmeta.run import build
from rlmeta.run.evaluation import evaluation_config, evaluation_specs
from rlmeta.run.video import record_videos
config = evaluation_config(load_config(sys.argv[1], sys.argv[3:]), "test")
env = build.build_env(config)
specs = evaluation_specs(config, env, 1, "test")
algorithm = build.build_algorithm(config, "cpu")
record_videos(config, algorithm, specs, 1, "inner gradient steps", Path(sys.argv[2]))
"""


@pytest.mark.skipif(
    ctypes.util.find_library("OSMesa") is None,
    reason="the OS's OSMesa library is absent (apt-get install libosmesa6; .ci/run installs it)",
)
@pytest.mark.parametrize("experiment, overrides", [
    ("maml_halfcheetah_vel.yaml", ["env_kwargs={horizon: 8}"]),
    ("maml_metaworld_ml1_reach.yaml", ["env_kwargs={benchmark: ML1, env_name: reach-v3, "
                                       "horizon: 8}"]),
])
def test_mujoco_families_render_headless_through_osmesa(
    tmp_path: Path, experiment: str, overrides: list[str]
) -> None:
    env = {**os.environ, "MUJOCO_GL": "osmesa", "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-c", _MUJOCO_SCRIPT, str(REPO / "experiments" / experiment),
         str(tmp_path), "maml.episodes_per_task=2", "envs_per_worker=2", *overrides],
        check=True, env=env, cwd=tmp_path, timeout=600,
    )
    _check_video(tmp_path, points=2)


def test_an_env_that_cannot_draw_is_refused_before_evaluating() -> None:
    from rlmeta.run.video import check_video_support

    config = load_config(REPO / "experiments/maml_navigation2d.yaml", [
        "env=rlmeta_envs.wrappers:TaskInObservation",
        "env_kwargs={wrapped: rlmeta/Navigation2D-v0}"])
    with pytest.raises(ValueError, match="TaskInObservation' rejected its kwargs.*render_mode"):
        check_video_support(config)
