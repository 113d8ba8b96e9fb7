"""Which torch device the learner uses: `auto` picks CUDA when this machine has it."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """Map a config `device` value to a concrete torch device string ("cpu" or "cuda")."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but torch sees no CUDA GPU on this machine; "
            "use device: auto or cpu"
        )
    return device
