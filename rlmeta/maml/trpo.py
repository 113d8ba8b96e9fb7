"""The pieces of a TRPO step (Schulman et al. 2015, appendix C): Hessian-vector products of the
mean KL, conjugate gradient, and a backtracking line search on the trust region."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


def flat(tensors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """Concatenate tensors into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Split a vector back into tensors shaped like `like`."""
    out, start = [], 0
    for t in like:
        out.append(vector[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def hessian_vector_product(
    value: Tensor, params: list[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """`v ↦ (∇²value + damping·I) v` for a scalar `value` of `params`, without forming the Hessian.

    The gradient graph is built once; each product is one more backward pass through it
    (Pearlmutter 1994). For TRPO `value` is the mean KL at the current point, whose Hessian is
    the Fisher information matrix.
    """
    grads = flat(torch.autograd.grad(value, params, create_graph=True))

    def product(vector: Tensor) -> Tensor:
        hv = torch.autograd.grad((grads * vector.detach()).sum(), params, retain_graph=True)
        return flat(hv) + damping * vector

    return product


class ConjugateGradientResult(NamedTuple):
    solution: Tensor
    curvature: Tensor  # solutionᵀ A solution


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float = 1e-10
) -> ConjugateGradientResult:
    """Approximately solve `A x = b` for symmetric positive-definite `A` given only `x ↦ A x`
    (Hestenes & Stiefel 1952; Nocedal & Wright, Algorithm 5.2), starting from x = 0.

    Also returns xᵀAx, which TRPO needs to scale its step: as A x = b − r for CG's residual r,
    it is xᵀ(b − r), so it costs no further product (each product is a double backward, and in
    a learner group a collective)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return ConjugateGradientResult(x, x @ (b - r))


@dataclass
class LineSearchResult:
    accepted: bool
    fraction: float  # fraction of the full step taken (0 when rejected)
    loss: float  # loss at the accepted point (the old loss when rejected)
    kl: float  # KL at the accepted point (0 when rejected)
    tries: int


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    old_loss: float,
    max_kl: float,
    max_steps: int,
    backtrack_ratio: float,
) -> LineSearchResult:
    """Try fractions 1, r, r², ... of the full step; accept the first whose loss is below
    `old_loss` and whose KL is at most `max_kl`. `evaluate(fraction) -> (loss, kl)`; a
    non-finite loss or KL counts as a failed try."""
    fraction = 1.0
    for tries in range(1, max_steps + 1):
        loss, kl = evaluate(fraction)
        finite = bool(torch.isfinite(torch.tensor([loss, kl])).all())
        if finite and loss < old_loss and kl <= max_kl:
            return LineSearchResult(True, fraction, loss, kl, tries)
        fraction *= backtrack_ratio
    return LineSearchResult(False, 0.0, old_loss, 0.0, max_steps)
