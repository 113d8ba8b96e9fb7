"""Videos of a policy adapting on held-out tasks: `rlmeta evaluate --video K`.

A task's video shows one episode per evaluation point of the algorithm's adaptation curve, in
order: for MAML the policy before adaptation and after each inner step, for RL² each episode of
one trial. The episodes come from the algorithm's own `evaluate_task` on the task and seed the
evaluation table used, run in this process on one env that records what it renders
(`EpisodeRecorder`). Which recorded episode shows which point is read from the episodes
themselves, not from the algorithm's name: a sequence starts with a seeded reset, so evaluation
points that are episodes of one sequence (an RL² trial) are the first sequence's episodes, and
points that are groups of sequences (MAML's stages of fresh episodes) are each group's first.
Rendering costs far more than stepping, so `evaluate_task` runs twice, seeded alike: once to
count episodes, once rendering only those shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmeta import tasks
from rlmeta.algorithm import Algorithm, TaskSpec
from rlmeta.config import ExperimentConfig

VIDEO_DIR = "videos"
INDEX_FILE = "videos.json"
MAX_FPS = 30
MIN_WIDTH = 320  # small pictures (bandits, MDPs) are scaled up so the caption fits
HOLD_S = 0.5  # each segment's last frame stays this long
_POINT = re.compile(r"return/(?:step|episode)_(?P<index>\d+)")


@dataclass
class RecordedEpisode:
    new_sequence: bool  # began with a seeded reset
    reward: float = 0.0
    frames: list[np.ndarray] = field(default_factory=list)


class EpisodeRecorder(gym.Wrapper):
    """Keeps each episode's return and whether it began a sequence; renders the episodes whose
    index (counted from construction) is in `render_episodes`."""

    def __init__(self, env: gym.Env, render_episodes: frozenset[int] = frozenset()) -> None:
        super().__init__(env)
        self.render_episodes = render_episodes
        self.episodes: list[RecordedEpisode] = []

    def _capture(self) -> None:
        if len(self.episodes) - 1 in self.render_episodes:
            frame = self.env.render()
            if not isinstance(frame, np.ndarray) or frame.ndim != 3:
                name = type(self.env.unwrapped).__name__
                raise ValueError(f"{name}.render() returned {type(frame).__name__}; expected an "
                                 f"RGB array (render_mode='rgb_array')")
            self.episodes[-1].frames.append(frame)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(seed=seed, options=options)
        self.episodes.append(RecordedEpisode(new_sequence=seed is not None))
        self._capture()
        return result

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episodes[-1].reward += float(reward)
        self._capture()
        return obs, reward, terminated, truncated, info


def shown_episodes(new_sequence: list[bool], points: int) -> list[int]:
    """The recorded episode shown for each of `points` evaluation points (see the module doc)."""
    starts = [i for i, new in enumerate(new_sequence) if new]
    if not starts or starts[0] != 0 or points < 1:
        raise ValueError(f"cannot place {points} evaluation points in episodes {new_sequence}")
    first_length = (starts[1] if len(starts) > 1 else len(new_sequence))
    if first_length == points:
        return list(range(points))
    if first_length == 1 and len(starts) % points == 0:
        per_point = len(starts) // points
        return [starts[k * per_point] for k in range(points)]
    raise ValueError(
        f"{len(new_sequence)} episodes in {len(starts)} sequences do not split into {points} "
        f"evaluation points"
    )


def render_env(config: ExperimentConfig) -> gym.Env:
    """The config's env drawing RGB frames (`render_mode="rgb_array"`)."""
    return tasks.make_task_env(config.env, **{**config.env_kwargs, "render_mode": "rgb_array"})


def check_video_support(config: ExperimentConfig) -> None:
    """Raise before anything is written when mp4 writing is not installed or the env cannot
    draw frames."""
    render_env(config).close()
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise ValueError(
            "--video needs imageio and imageio-ffmpeg; install them with pip install "
            "'rlmeta[video]'"
        ) from None


def record_videos(
    config: ExperimentConfig,
    algorithm: Algorithm,
    specs: list[TaskSpec],
    adapt_steps: int,
    axis: str,
    out_dir: Path,
) -> list[Path]:
    """One mp4 per spec in `out_dir`, and `videos.json` describing each video's segments."""
    from rlmeta.distributed.errors import TaskFailure
    from rlmeta.distributed.worker import evaluate_task

    out_dir.mkdir(parents=True, exist_ok=True)
    env = render_env(config)
    fps = min(int(env.metadata.get("render_fps") or MAX_FPS), MAX_FPS)
    paths, index = [], []
    try:
        for spec in specs:
            counting = EpisodeRecorder(env)
            metrics = evaluate_task(algorithm, [counting], spec, adapt_steps)
            if isinstance(metrics, TaskFailure):
                raise RuntimeError(f"video of task {spec.index}: {metrics.message}")
            points = sorted(int(m["index"]) for key in metrics if (m := _POINT.fullmatch(key)))
            shown = shown_episodes([e.new_sequence for e in counting.episodes], len(points))
            recorder = EpisodeRecorder(env, frozenset(shown))
            evaluate_task(algorithm, [recorder], spec, adapt_steps)
            if len(recorder.episodes) != len(counting.episodes):
                raise RuntimeError(f"video of task {spec.index}: a second seeded evaluation "
                                   f"ran {len(recorder.episodes)} episodes, the first "
                                   f"{len(counting.episodes)}; the env does not reproduce")
            task = tasks.describe_task(spec.task)
            segments = [
                (f"{axis}: {point}, return {recorder.episodes[e].reward:.2f}",
                 recorder.episodes[e].frames)
                for point, e in zip(points, shown, strict=True)
            ]
            path = out_dir / f"task_{spec.index:03d}.mp4"
            lengths = write_video(path, task, segments, fps)
            paths.append(path)
            index.append({
                "file": path.name, "task": spec.task, "seed": spec.seed, "fps": fps,
                "segments": [
                    {"label": label, "episode": e, "frames": n}
                    for (label, _), e, n in zip(segments, shown, lengths, strict=True)
                ],
            })
    finally:
        env.close()
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=1, default=_plain) + "\n")
    return paths


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"task value {value!r} is not plain data")


def write_video(
    path: Path, title: str, segments: list[tuple[str, list[np.ndarray]]], fps: int
) -> list[int]:
    """Segments one after another, each frame captioned with `title` and its segment's label
    and each segment's last frame held `HOLD_S`; returns the frames written per segment."""
    import imageio.v2 as imageio

    hold = max(int(round(HOLD_S * fps)), 1)
    lengths = []
    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1,
                            quality=7, pixelformat="yuv420p") as writer:
        for label, frames in segments:
            if not frames:
                raise ValueError(f"segment {label!r} has no frames")
            captioned = [caption(frame, title, label) for frame in frames]
            captioned += [captioned[-1]] * hold
            for frame in captioned:
                writer.append_data(frame)
            lengths.append(len(captioned))
    return lengths


CAPTION_HEIGHT = 32


def caption(frame: np.ndarray, title: str, label: str) -> np.ndarray:
    """The frame scaled up to at least `MIN_WIDTH` wide, under two lines of text, padded to even
    dimensions (yuv420p needs them)."""
    from PIL import Image, ImageDraw

    frame = np.asarray(frame, dtype=np.uint8)[..., :3]
    scale = max(1, -(-MIN_WIDTH // frame.shape[1]))
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    height, width = frame.shape[:2]
    out = np.full((height + CAPTION_HEIGHT + height % 2, width + width % 2, 3), 255, np.uint8)
    out[CAPTION_HEIGHT:CAPTION_HEIGHT + height, :width] = frame
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title, fill=(0, 0, 0))
    draw.text((4, 16), label, fill=(0, 0, 0))
    return np.asarray(image)
