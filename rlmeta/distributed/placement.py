"""Where the learner runs: a pure function of the configured device and the cluster's resources."""

from __future__ import annotations

from collections.abc import Mapping

DEVICES = ("auto", "cpu", "cuda")


def learner_placement(device: str, cluster_resources: Mapping[str, float]) -> tuple[str, float]:
    """Return (torch device, GPUs to reserve) for the learner.

    `auto` takes a GPU when the cluster has one; `cuda` insists on one; `cpu` never takes one.
    `cluster_resources` is what `ray.cluster_resources()` returns (or a fake in tests).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    has_gpu = float(cluster_resources.get("GPU", 0.0)) >= 1.0
    if device == "cuda" and not has_gpu:
        raise RuntimeError(
            "device is 'cuda' but the cluster has no GPU "
            f"(resources: {dict(cluster_resources)}); use device 'auto' or 'cpu'"
        )
    if device == "cpu" or not has_gpu:
        return "cpu", 0.0
    return "cuda", 1.0
