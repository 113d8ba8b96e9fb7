"""Shared test setup: one torch thread per process (2 shared cores; see the ground rules)."""

import torch

torch.set_num_threads(1)
