"""A GRU whose gate pre-activations are layer-normalised (Ba, Kiros and Hinton 2016, §3.1).

Layer normalisation keeps the gates' inputs at unit scale whatever the scale of the weights or of
the inputs, which steadies a recurrent state carried over hundreds of steps (a 25-episode MDP
trial is 250). The published PPO reproduction of RL²'s MDP table used a layer-normalised GRU.

The input's and the state's contributions are normalised separately, each over all three gates
at once, and the biases are the layer norms' offsets (the projections have none, so a projection's
scale cancels exactly). Otherwise the cell is `torch.nn.GRU`'s:

    r = σ(x̂_r + ĥ_r),  z = σ(x̂_z + ĥ_z),  n = tanh(x̂_n + r ⊙ ĥ_n),  h' = (1 − z) ⊙ n + z ⊙ h

with x̂ = LN(W_x x) and ĥ = LN(W_h h). Same call signature as a one-layer `nn.GRU`.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNormGRU(nn.Module):
    """One-layer, time-major GRU with layer-normalised gates: `forward(x [T,B,I], h [1,B,H])`."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"LayerNormGRU sizes must be >= 1, got input_size={input_size}, "
                f"hidden_size={hidden_size}"
            )
        self.hidden_size = hidden_size
        self.input_to_gates = nn.Linear(input_size, 3 * hidden_size, bias=False)
        self.state_to_gates = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.input_norm = nn.LayerNorm(3 * hidden_size)
        self.state_norm = nn.LayerNorm(3 * hidden_size)
        # The state norm's offset for n sits inside r ⊙ (...), as nn.GRU's b_hn does; its
        # offsets for r and z duplicate the input norm's, harmlessly.

    def forward(
        self, inputs: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.dim() != 3 or state.dim() != 3 or state.shape[0] != 1:
            raise ValueError(
                f"LayerNormGRU expects inputs [T, B, I] and state [1, B, H], got "
                f"{tuple(inputs.shape)} and {tuple(state.shape)}"
            )
        # The input side does not depend on the state: all T steps in one matmul.
        input_gates = self.input_norm(self.input_to_gates(inputs))
        hidden = state[0]
        size = self.hidden_size
        outputs = []
        for step_gates in input_gates:
            state_gates = self.state_norm(self.state_to_gates(hidden))
            reset, update = torch.sigmoid(
                step_gates[:, : 2 * size] + state_gates[:, : 2 * size]
            ).chunk(2, dim=-1)
            candidate = torch.tanh(step_gates[:, 2 * size :] + reset * state_gates[:, 2 * size :])
            hidden = (1.0 - update) * candidate + update * hidden
            outputs.append(hidden)
        return torch.stack(outputs), hidden.unsqueeze(0)
