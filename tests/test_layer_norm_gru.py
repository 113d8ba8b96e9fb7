"""The layer-normalised GRU: its equations, its state handling, and the invariance it exists for."""

import pytest
import torch

from rlmeta.rl2.layer_norm_gru import LayerNormGRU


def make_cell(input_size: int = 5, hidden_size: int = 4) -> LayerNormGRU:
    torch.manual_seed(0)
    cell = LayerNormGRU(input_size, hidden_size)
    # Non-trivial gains and offsets, so the check below covers the norms' affine parts too.
    with torch.no_grad():
        for norm in (cell.input_norm, cell.state_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return cell


def reference_step(cell: LayerNormGRU, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The module docstring's equations, written out with an explicit layer norm."""

    def layer_norm(v: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        mean = v.mean(-1, keepdim=True)
        variance = ((v - mean) ** 2).mean(-1, keepdim=True)
        return (v - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias

    x_hat = layer_norm(x @ cell.input_to_gates.weight.T, cell.input_norm)
    h_hat = layer_norm(h @ cell.state_to_gates.weight.T, cell.state_norm)
    x_r, x_z, x_n = x_hat.chunk(3, dim=-1)
    h_r, h_z, h_n = h_hat.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def test_each_step_follows_the_layer_normalised_gru_equations():
    cell = make_cell()
    inputs = torch.randn(6, 3, 5)
    state = torch.randn(1, 3, 4)
    with torch.no_grad():
        outputs, final = cell(inputs, state)
        h = state[0]
        for t in range(6):
            h = reference_step(cell, inputs[t], h)
            torch.testing.assert_close(outputs[t], h, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final[0], h, atol=1e-6, rtol=1e-5)


def test_one_call_over_a_sequence_equals_stepping_it_with_the_carried_state():
    cell = make_cell()
    inputs = torch.randn(7, 2, 5)
    state = torch.zeros(1, 2, 4)
    with torch.no_grad():
        whole, whole_final = cell(inputs, state)
        steps = []
        for t in range(7):
            out, state = cell(inputs[t : t + 1], state)
            steps.append(out[0])
    torch.testing.assert_close(torch.stack(steps), whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(state, whole_final, atol=1e-6, rtol=1e-6)


def test_outputs_do_not_depend_on_the_scale_of_the_projections():
    # What layer normalisation buys: the gates see unit-scale inputs whatever the weights' scale.
    cell = make_cell()
    inputs = torch.randn(5, 3, 5)
    state = torch.randn(1, 3, 4)
    with torch.no_grad():
        before, _ = cell(inputs, state)
        cell.input_to_gates.weight.mul_(7.0)
        cell.state_to_gates.weight.mul_(3.0)
        after, _ = cell(inputs, state)
        plain = torch.nn.GRU(5, 4)
        plain_before, _ = plain(inputs, state)
        plain.weight_ih_l0.mul_(7.0)
        plain_after, _ = plain(inputs, state)
    # Equal up to the norms' epsilon (1e-5 against variances of order 0.1).
    torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)
    # An un-normalised GRU is not invariant, so the check above is not vacuous.
    assert (plain_after - plain_before).abs().max() > 0.05


def test_gradients_reach_every_parameter():
    cell = make_cell()
    outputs, final = cell(torch.randn(4, 2, 5), torch.randn(1, 2, 4))
    (outputs.sum() + final.pow(2).sum()).backward()
    for name, parameter in cell.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bad_shapes_and_sizes_are_named():
    cell = make_cell()
    with pytest.raises(ValueError, match=r"inputs \[T, B, I\] and state \[1, B, H\]"):
        cell(torch.randn(3, 5), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"state \[1, B, H\], got \(3, 5, 2\) and \(3, 4\)"):
        cell(torch.randn(3, 5, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="hidden_size=0"):
        LayerNormGRU(3, 0)
