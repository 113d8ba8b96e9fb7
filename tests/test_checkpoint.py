"""Checkpoints: weights_only-readable, atomic, pruned, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlmeta import checkpoint as ckpt


def sample_checkpoint(iteration: int = 3) -> dict:
    rng = np.random.default_rng(7)
    rng.integers(0, 10, size=5)
    return ckpt.make_checkpoint(
        config={"algorithm": "maml", "env_kwargs": {"arms": 5}, "address": None},
        runtime_state={
            "algorithm": {"policy": {"w": torch.randn(3, 2)}, "optim": {"step": 4}},
            "weights_version": iteration,
        },
        iteration=iteration,
        env_steps=1234,
        rng_state=rng.bit_generator.state,
        extra={"best_score": -3.5, "torch_rng_state": torch.get_rng_state()},
    )


def test_round_trip_with_weights_only_restores_the_rng(tmp_path: Path) -> None:
    original = sample_checkpoint()
    path = ckpt.save_checkpoint(original, ckpt.checkpoint_path(tmp_path, 3))
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert raw["format"] == ckpt.FORMAT and raw["version"] == ckpt.VERSION
    loaded = ckpt.load_checkpoint(path)
    assert torch.equal(loaded["runtime"]["algorithm"]["policy"]["w"],
                       original["runtime"]["algorithm"]["policy"]["w"])
    assert loaded["config"] == original["config"]
    assert (loaded["iteration"], loaded["env_steps"]) == (3, 1234)
    restored = np.random.default_rng()
    restored.bit_generator.state = loaded["rng_state"]
    expected = np.random.default_rng(7)
    expected.integers(0, 10, size=5)
    assert np.array_equal(restored.integers(0, 1000, size=10), expected.integers(0, 1000, size=10))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    path = ckpt.checkpoint_path(tmp_path, 1)
    ckpt.save_checkpoint(sample_checkpoint(1), path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(sample_checkpoint(2), path)
    # The old checkpoint is untouched and no partial file is left beside it.
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_truncated_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    path = ckpt.save_checkpoint(sample_checkpoint(), tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="cannot be read") as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    torch.save({"model": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="is not an rlmeta checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")

    # A pickled object outside weights_only's allow-list (SB3's pickled-objects problem).
    torch.save({"format": ckpt.FORMAT, "env": Path("x")}, tmp_path / "objects.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(tmp_path / "objects.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(tmp_path / "text.pt")
    newer = {**sample_checkpoint(), "version": ckpt.VERSION + 1}
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(ckpt.CheckpointError, match="format version 3; this rlmeta reads version 2"):
        ckpt.load_checkpoint(tmp_path / "newer.pt")
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_keep_latest_and_resolve(tmp_path: Path) -> None:
    for iteration in (2, 4, 6, 8, 10):
        path = ckpt.checkpoint_path(tmp_path, iteration)
        ckpt.save_checkpoint(sample_checkpoint(iteration), path)
    ckpt.save_checkpoint(sample_checkpoint(4), ckpt.best_path(tmp_path))
    removed = ckpt.prune_checkpoints(tmp_path, keep=3)
    assert [p.name for p in removed] == ["ckpt_000002.pt", "ckpt_000004.pt"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "ckpt_000006.pt", "ckpt_000008.pt", "ckpt_000010.pt"
    ]
    assert ckpt.best_path(tmp_path).exists()  # best is never pruned
    assert ckpt.resolve_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 10)
    assert ckpt.resolve_checkpoint(ckpt.best_path(tmp_path)) == ckpt.best_path(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="has no checkpoints"):
        ckpt.latest_checkpoint(tmp_path / "empty")
    with pytest.raises(ckpt.CheckpointError, match="neither a run directory nor a checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "nothing")
