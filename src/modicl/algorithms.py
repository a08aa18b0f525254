"""Reference in-context algorithms for z = w·x mod p (PAPER.md §4.1–4.3), exact and batched.

* **Ratio matching** (RM, §4.1): the query x is solved when it lies on the line through the origin
  spanned by some context input, x ≡ c·x_i; then ẑ = c·z_i. The d = 2 model's algorithm at every shot
  count and the d = 4 model's at few shots.
* **Modular regression** (MR, §4.2): the query is solved when it lies in the span of the context
  inputs over Z_p, x ≡ Σ c_i·x_i; then ẑ = Σ c_i·z_i. For n_var = 2 that is every query once two
  context inputs are independent ((a, b)ᵀ = M⁻¹ z), and RM's line otherwise. Computed by Gaussian
  elimination mod p over the examples in order (:func:`span_scan`), which covers any n_var.
* **Bayes over the pre-training tasks**: the i.d. tasks consistent with every context example, each
  voting for its own answer (uniform prior); what a model that only memorised its tasks can do.

All functions take integer tensors with inputs on the last axis (n_var = 2: (x, y)) and work on any
leading batch shape with no Python loop over queries or tasks (the elimination loops over the k context
examples); they return −1 where an algorithm makes no prediction. The data must be noise-free. No sympy.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from .family import n_vectors


def inverse_table(p: int, device: torch.device | str = "cpu") -> Int[Tensor, " p"]:
    """int64 [p]: the inverse of n mod p at index n (index 0 holds 0, which has no inverse)."""
    return torch.tensor([0] + [pow(n, -1, p) for n in range(1, p)], dtype=torch.int64, device=device)


def proportional(u: Int[Tensor, "*#batch n_var"], v: Int[Tensor, "*#batch n_var"], p: int) -> Bool[Tensor, "*out"]:
    """bool [...]: u ≡ c·v or v ≡ c·u mod p for some c, i.e. every 2×2 minor u_a·v_b − u_b·v_a vanishes
    (n_var = 2: the determinant x·y' − y·x'). u, v: int64 [..., n_var], broadcastable."""
    n = u.shape[-1]
    out = torch.ones(torch.broadcast_shapes(u.shape[:-1], v.shape[:-1]), dtype=torch.bool, device=u.device)
    for a in range(n):
        for b in range(a + 1, n):
            out = out & ((u[..., a] * v[..., b] - u[..., b] * v[..., a]) % p == 0)
    return out


def _first_nonzero(v: Tensor) -> Tensor:
    """int64 [...]: the first axis-(−1) index where v [..., n] is non-zero (0 where v is all zero)."""
    return (v != 0).to(torch.int8).argmax(dim=-1)


def ratio_matching(
    ctx_xy: Int[Tensor, "*#batch k n_var"], ctx_z: Int[Tensor, "*#batch k"], query: Int[Tensor, "*#batch n_var"], p: int
) -> Int[Tensor, "*out"]:
    """Ratio-matching predictions (PAPER.md §4.1).

    Args:
        ctx_xy: int64 [..., k, n_var] context inputs x_i ((x_i, y_i) for n_var = 2).
        ctx_z: int64 [..., k] their labels z_i.
        query: int64 [..., n_var] the query inputs.
        p: the prime modulus.
    Returns:
        int64 [...]: ẑ = c·z_i mod p for the first context example i whose line contains the query
        (x ≡ c·x_i, x_i ≠ 0); 0 for the query 0 (c = 0); −1 where no line of the context contains it.
    """
    origin = (query == 0).all(dim=-1)
    if ctx_xy.shape[-2] == 0:  # no context (0-shot): only the origin is answered
        lead_shape = torch.broadcast_shapes(query.shape[:-1], ctx_xy.shape[:-2])
        return torch.where(origin, 0, -1).expand(lead_shape).to(torch.int64)
    inv = inverse_table(p, ctx_xy.device)
    shape = (*torch.broadcast_shapes(query.shape[:-1], ctx_xy.shape[:-2]), *ctx_xy.shape[-2:])
    q, ctx_xy = query[..., None, :].expand(shape), ctx_xy.expand(shape)
    nonzero = (ctx_xy != 0).any(dim=-1)
    on_line = nonzero & proportional(q, ctx_xy, p)  # [..., k]
    lead = _first_nonzero(ctx_xy)[..., None]  # c = x_t / x_i,t at the context input's first non-zero coordinate t
    c = q.gather(-1, lead).squeeze(-1) * inv[ctx_xy.gather(-1, lead).squeeze(-1)] % p
    pred_i = (c * ctx_z) % p
    first = on_line.to(torch.int8).argmax(dim=-1, keepdim=True)
    pred = torch.gather(pred_i, -1, first).squeeze(-1)
    pred = torch.where(on_line.any(dim=-1), pred, torch.full_like(pred, -1))
    return torch.where(origin, torch.zeros_like(pred), pred)


def _reduce(basis: Tensor, taken: Tensor, row: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Reduce ``row`` [..., n+1] (inputs, label) by a reduced row-echelon ``basis`` [..., n, n+1] whose
    row c, where ``taken`` [..., n], has pivot 1 at column c and 0 at every other pivot column.
    Returns (residual [..., n+1], the label the basis implies for the row's inputs [...])."""
    n = basis.shape[-2]
    coef = row[..., :n] * taken  # the coordinates along the basis rows: the row's entries at the pivots
    residual = (row - (coef[..., None] * basis).sum(-2)) % p
    implied = (coef * basis[..., n]).sum(-1) % p
    return residual, implied


def span_scan(
    ctx_xy: Int[Tensor, "*#batch k n_var"], ctx_z: Int[Tensor, "*#batch k"], p: int
) -> tuple[
    Bool[Tensor, "*batch k"], Int[Tensor, "*batch k"], Int[Tensor, "*batch n_var n_var+1"], Bool[Tensor, "*batch n_var"]
]:
    """Gaussian elimination mod p over the examples in order (modular regression, PAPER.md §4.2).

    Args:
        ctx_xy: int64 [..., k, n_var] inputs; ctx_z: int64 [..., k] their labels.
    Returns:
        in_span bool [..., k]: input j lies in the span of inputs 0…j−1 (the zero input always does);
        implied int64 [..., k]: the label examples 0…j−1 imply for input j, −1 where not in the span;
        basis int64 [..., n_var, n_var + 1] and taken bool [..., n_var]: the reduced row-echelon form of
        all k examples (row c, where taken, is (inputs, label) with pivot 1 at input coordinate c).
    """
    *lead, k, n = ctx_xy.shape
    inv = inverse_table(p, ctx_xy.device)
    rows = torch.cat([ctx_xy, ctx_z[..., None]], dim=-1) % p  # [..., k, n+1]
    basis = rows.new_zeros(*lead, n, n + 1)
    taken = torch.zeros(*lead, n, dtype=torch.bool, device=rows.device)
    cols = torch.arange(n, device=rows.device)
    in_span, implied = [], []
    for j in range(k):
        residual, label = _reduce(basis, taken, rows[..., j, :], p)
        spanned = (residual[..., :n] == 0).all(-1)
        in_span.append(spanned)
        implied.append(torch.where(spanned, label, torch.full_like(label, -1)))
        c = _first_nonzero(residual[..., :n])  # a free column: the residual is 0 at every pivot
        new = residual * inv[residual.gather(-1, c[..., None])] % p  # pivot 1 at c
        cleared = (basis - basis.gather(-1, c[..., None, None].expand(*lead, n, 1)) * new[..., None, :]) % p
        at_c = (cols == c[..., None]) & ~spanned[..., None]  # [..., n]: the row that takes the new vector
        basis = torch.where(at_c[..., None], new[..., None, :], torch.where(spanned[..., None, None], basis, cleared))
        taken = taken | at_c
    stack = lambda t, like: torch.stack(t, -1) if t else like.new_zeros(*lead, 0)  # noqa: E731
    return stack(in_span, taken), stack(implied, rows), basis, taken


def solve_task(
    ctx_xy: Int[Tensor, "*#batch k n_var"], ctx_z: Int[Tensor, "*#batch k"], p: int
) -> tuple[Int[Tensor, "*batch n_var"], Bool[Tensor, "*batch"]]:
    """Recover the task vector from a context by modular regression (PAPER.md §4.2).

    Args:
        ctx_xy: int64 [..., k, n_var]; ctx_z: int64 [..., k].
    Returns:
        (task int64 [..., n_var] = w, solvable bool [...]: the inputs span Z_p^n_var); task is all −1
        where they do not.
    """
    _, _, basis, taken = span_scan(ctx_xy, ctx_z, p)
    solvable = taken.all(dim=-1)
    task = basis[..., -1]  # full rank: the echelon form is the identity, the label column is w
    return torch.where(solvable[..., None], task, torch.full_like(task, -1)), solvable


def modular_regression(
    ctx_xy: Int[Tensor, "*#batch k n_var"], ctx_z: Int[Tensor, "*#batch k"], query: Int[Tensor, "*#batch n_var"], p: int
) -> Int[Tensor, "*out"]:
    """Modular-regression predictions (PAPER.md §4.2): Σ c_i·z_i mod p when the query is Σ c_i·x_i in
    the span of the context inputs (every query once they span Z_p^n_var; for n_var = 2 with one line
    in the context this is ratio matching), else −1. Shapes as :func:`ratio_matching`."""
    _, _, basis, taken = span_scan(ctx_xy, ctx_z, p)
    row = torch.cat([query, torch.zeros_like(query[..., :1])], dim=-1)
    residual, implied = _reduce(basis, taken, row, p)
    return torch.where((residual[..., :-1] == 0).all(-1), implied, torch.full_like(implied, -1))


def bayes_id(
    ctx_xy: Int[Tensor, "*#batch k n_var"],
    ctx_z: Int[Tensor, "*#batch k"],
    query: Int[Tensor, "*#batch n_var"],
    id_tasks: Int[Tensor, "n_tasks n_var"],
    p: int,
) -> tuple[Int[Tensor, "*out"], Int[Tensor, "*out"]]:
    """The Bayes predictor over the pre-training tasks: uniform prior on ``id_tasks``, posterior on
    those consistent with every context example, prediction = the most voted answer (smallest z on
    ties).

    Args:
        ctx_xy: int64 [..., k, n_var]; ctx_z: int64 [..., k]; query: int64 [..., n_var].
        id_tasks: int64 [T, n_var] the pre-training task vectors.
    Returns:
        (pred int64 [...], −1 where no pre-training task is consistent; n_consistent int64 [...]).
    """
    ab = id_tasks.T  # [n_var, T]
    consistent = ((ctx_xy @ ab) % p == ctx_z[..., None]).all(dim=-2)  # [..., T]
    answers = (query @ ab) % p  # [..., T]
    votes = torch.zeros(*answers.shape[:-1], p, dtype=torch.int64, device=answers.device)
    votes.scatter_add_(-1, answers, consistent.to(torch.int64))
    n = consistent.sum(-1)
    pred = votes.argmax(dim=-1)
    return torch.where(n > 0, pred, torch.full_like(pred, -1)), n


def ratio_matching_expected_accuracy(p: int, k: int, *, n_var: int) -> float:
    """Exact expected RM accuracy over all p**n_var queries for k distinct context inputs drawn
    uniformly from the p**n_var inputs (PAPER.md §3, Fig. 5 reference table for n_var = 2): the origin
    is always solved, and each of the (p**n_var − 1)/(p − 1) lines through the origin (p + 1 for
    n_var = 2; p − 1 nonzero points each) is solved when one of its points is in the context."""
    n, line = n_vectors(p, n_var), p - 1
    miss = math.comb(n - line, k) / math.comb(n, k)
    return (1 + line * ((n - 1) // line) * (1 - miss)) / n
