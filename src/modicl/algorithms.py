"""Reference in-context algorithms for z = a·x + b·y mod p (PAPER.md §4.1–4.3), exact and batched.

* **Ratio matching** (RM, §4.1): the query (x, y) is solved when it lies on the line through the origin
  spanned by some context input, (x, y) ≡ c·(x_i, y_i); then ẑ = c·z_i. The d = 2 model's algorithm at
  every shot count and the d = 4 model's at few shots.
* **Modular regression** (MR, §4.2): once two context inputs are linearly independent over Z_p the task
  is determined, (a, b)ᵀ = M⁻¹ z with M = [[x_i, y_i], [x_j, y_j]] (adjugate times the inverse of the
  determinant), and every query is solved; with only one line in the context MR reduces to RM.
* **Bayes over the pre-training tasks**: the i.d. tasks consistent with every context example, each
  voting for its own answer (uniform prior); what a model that only memorised its tasks can do.

All functions take integer tensors and work on any leading batch shape with no Python loop over queries,
contexts or tasks; they return −1 where an algorithm makes no prediction. No sympy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .tasks import task_labels


def inverse_table(p: int, device: torch.device | str = "cpu") -> Tensor:
    """int64 [p]: the inverse of n mod p at index n (index 0 holds 0, which has no inverse)."""
    return torch.tensor([0] + [pow(n, -1, p) for n in range(1, p)], dtype=torch.int64, device=device)


def ratio_matching(ctx_xy: Tensor, ctx_z: Tensor, query: Tensor, p: int) -> Tensor:
    """Ratio-matching predictions (PAPER.md §4.1).

    Args:
        ctx_xy: int64 [..., k, 2] context inputs (x_i, y_i).
        ctx_z: int64 [..., k] their labels z_i.
        query: int64 [..., 2] the query inputs (x, y).
        p: the prime modulus.
    Returns:
        int64 [...]: ẑ = c·z_i mod p for the first context example i whose line contains the query
        ((x, y) ≡ c·(x_i, y_i), (x_i, y_i) ≠ (0, 0)); 0 for the query (0, 0) (c = 0); −1 where no line
        of the context contains the query.
    """
    inv = inverse_table(p, ctx_xy.device)
    xi, yi = ctx_xy[..., 0], ctx_xy[..., 1]
    x, y = query[..., :1], query[..., 1:]
    nonzero = (xi != 0) | (yi != 0)
    on_line = nonzero & ((x * yi - y * xi) % p == 0)  # [..., k]
    c = torch.where(xi != 0, x * inv[xi], y * inv[yi]) % p
    pred_i = (c * ctx_z) % p
    first = on_line.to(torch.int8).argmax(dim=-1, keepdim=True)
    pred = torch.gather(pred_i, -1, first).squeeze(-1)
    pred = torch.where(on_line.any(dim=-1), pred, torch.full_like(pred, -1))
    origin = (query[..., 0] == 0) & (query[..., 1] == 0)
    return torch.where(origin, torch.zeros_like(pred), pred)


def solve_task(ctx_xy: Tensor, ctx_z: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Recover the task vector from a context by modular regression (PAPER.md §4.2).

    Uses the first pair of context examples (i < j, in order) whose inputs are linearly independent.

    Args:
        ctx_xy: int64 [..., k, 2]; ctx_z: int64 [..., k].
    Returns:
        (task int64 [..., 2] = (a, b), solvable bool [...]); task is (−1, −1) where no two inputs are
        independent.
    """
    k = ctx_xy.shape[-2]
    xi, yi = ctx_xy[..., :, None, 0], ctx_xy[..., :, None, 1]
    xj, yj = ctx_xy[..., None, :, 0], ctx_xy[..., None, :, 1]
    det = (xi * yj - yi * xj) % p  # [..., k, k]
    upper = torch.ones(k, k, dtype=torch.bool, device=ctx_xy.device).triu(1)
    ok = (det != 0) & upper
    flat = ok.flatten(-2)
    idx = flat.to(torch.int8).argmax(dim=-1)
    i, j = idx // k, idx % k
    solvable = flat.any(dim=-1)
    g = lambda t, n: torch.gather(t, -1, n[..., None]).squeeze(-1)
    x1, y1, z1 = g(ctx_xy[..., 0], i), g(ctx_xy[..., 1], i), g(ctx_z, i)
    x2, y2, z2 = g(ctx_xy[..., 0], j), g(ctx_xy[..., 1], j), g(ctx_z, j)
    d_inv = inverse_table(p, ctx_xy.device)[(x1 * y2 - y1 * x2) % p]
    # [a, b]ᵀ = M⁻¹ [z1, z2]ᵀ with M = [[x1, y1], [x2, y2]]: M⁻¹ = det⁻¹ [[y2, −y1], [−x2, x1]]
    a = (d_inv * (y2 * z1 - y1 * z2)) % p
    b = (d_inv * (x1 * z2 - x2 * z1)) % p
    task = torch.stack([a, b], dim=-1)
    return torch.where(solvable[..., None], task, torch.full_like(task, -1)), solvable


def modular_regression(ctx_xy: Tensor, ctx_z: Tensor, query: Tensor, p: int) -> Tensor:
    """Modular-regression predictions (PAPER.md §4.2): a·x + b·y mod p with (a, b) from
    :func:`solve_task` when the context spans Z_p², else the ratio-matching prediction (the query is
    then expressible only if it lies on the context's one line). Shapes as :func:`ratio_matching`."""
    task, solvable = solve_task(ctx_xy, ctx_z, p)
    full = task_labels(query, task, p)
    return torch.where(solvable, full, ratio_matching(ctx_xy, ctx_z, query, p))


def bayes_id(ctx_xy: Tensor, ctx_z: Tensor, query: Tensor, id_tasks: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """The Bayes predictor over the pre-training tasks: uniform prior on ``id_tasks``, posterior on
    those consistent with every context example, prediction = the most voted answer (smallest z on
    ties).

    Args:
        ctx_xy: int64 [..., k, 2]; ctx_z: int64 [..., k]; query: int64 [..., 2].
        id_tasks: int64 [T, 2] the pre-training task vectors.
    Returns:
        (pred int64 [...], −1 where no pre-training task is consistent; n_consistent int64 [...]).
    """
    ab = id_tasks.T  # [2, T]
    consistent = ((ctx_xy @ ab) % p == ctx_z[..., None]).all(dim=-2)  # [..., T]
    answers = (query @ ab) % p  # [..., T]
    votes = torch.zeros(*answers.shape[:-1], p, dtype=torch.int64, device=answers.device)
    votes.scatter_add_(-1, answers, consistent.to(torch.int64))
    n = consistent.sum(-1)
    pred = votes.argmax(dim=-1)
    return torch.where(n > 0, pred, torch.full_like(pred, -1)), n


def ratio_matching_expected_accuracy(p: int, k: int) -> float:
    """Exact expected RM accuracy over all p² queries for k distinct context inputs drawn uniformly
    from the p² pairs (PAPER.md §3, Fig. 5 reference table): the origin is always solved, and each of
    the p + 1 lines through the origin (p − 1 nonzero points each) is solved when one of its points is
    in the context."""
    n, line = p * p, p - 1
    miss = math.comb(n - line, k) / math.comb(n, k)
    return (1 + line * (p + 1) * (1 - miss)) / n
