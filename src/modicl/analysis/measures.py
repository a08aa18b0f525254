"""Interpretability analyses of a trained model (PAPER.md §4.4–4.8), as plain functions on tensors.

Every function is batched over the p**n_var queries (the p² pairs (x, y) for n_var = 2; no Python loop
over queries) and returns numbers; :mod:`modicl.analysis.figures` draws them and ``modicl analyze`` runs
them on a checkpoint. The circle-of-circles, ratio-class and k-shot-grid measures read the (x, y) plane
and exist for n_var = 2 only (they raise ValueError otherwise); the others take any n_var.

* :func:`probe_batch`: the probe batch of §4.4 (example k sweeps all p**n_var inputs, the others fixed).
* :func:`head_scores`: per attention head, the attention mass on the previous token, two tokens back,
  the first token (sink), itself, and on one token type of all earlier examples (stripes every n_var + 1).
* :func:`centered_pca` and :func:`circularity`: the "circle of circles" of §4.5, with centred PCA and a
  fixed sign convention (the official helper projected uncentred data, PAPER.md §6).
* :func:`cosine_matrix` and :func:`ratio_invariance`: the "kaleidoscope" of §4.6.
* :func:`kshot_grid`: correctness over all p² queries for a given context at chosen shot counts (§4.7).
* :func:`algorithm_curves`: k-shot accuracy of the model, ratio matching, modular regression and the
  i.d. Bayes predictor, and the per-k agreement of the model with each (the algorithmic shift, §4.3).
* :func:`label_noise` and :func:`logit_lens` (§4.8).
"""

from __future__ import annotations

import contextlib
import math
from typing import cast

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ..algorithms import bayes_id, inverse_table, modular_regression, ratio_matching
from ..data import model_inputs, sample_sequences
from ..family import all_vectors, example_width, examples, input_length, query_slice, task_labels
from ..model import Transformer


def all_inputs(p: int, device: torch.device | str = "cpu", *, n_var: int) -> Int[Tensor, "n_inputs n_var"]:
    """int64 [p**n_var, n_var]: every input in lexicographic order (n_var = 2: every (x, y), index p·x + y)."""
    return torch.as_tensor(all_vectors(p, n_var), device=device)


def _require_plane(n_var: int, what: str) -> None:
    if n_var != 2:
        raise ValueError(f"{what} reads the (x, y) plane and needs n_var = 2 inputs per example, not {n_var}")


def probe_batch(
    task: tuple[int, ...], p: int, n_ctx: int, k: int, generator: torch.Generator
) -> Int[Tensor, "n_inputs seq"]:
    """The probe batch of PAPER.md §4.4: p**n_var sequences of one task (n_var = len(task)) whose k-th
    example (0-based) is the input of the row's index (lexicographic) and whose other examples are one
    fixed random draw.

    Returns:
        int64 [p**n_var, (n_var + 1)·n_ctx] full sequences (z included); feed ``model_inputs`` of it to the model.
    Raises:
        ValueError: k outside [0, n_ctx).
    """
    if not 0 <= k < n_ctx:
        raise ValueError(f"probe position k = {k} must be in [0, n_ctx = {n_ctx})")
    grid = all_inputs(p, n_var=len(task))
    xy = torch.randint(0, p, (n_ctx, len(task)), generator=generator).expand(len(grid), -1, -1).clone()
    xy[:, k] = grid
    z = task_labels(xy, torch.tensor(task), p)
    return torch.cat([xy, z[..., None]], dim=-1).flatten(1)


def head_scores(pattern: Float[Tensor, "batch heads seq seq"], *, n_var: int) -> dict[str, Float[Tensor, " heads"]]:
    """Scores naming recognisable attention heads (PAPER.md §4.4).

    Args:
        pattern: [B, H, T, T] attention probabilities (rows sum to 1, causal).
        n_var: inputs per example; an example is w = n_var + 1 tokens.
    Returns:
        {score: [H]} for 'previous' (mass on t−1), 'two_back' (t−2), 'sink' (position 0, t ≥ 1),
        'self' (t), 'stripe' (the largest mass on one of the w token types among the examples at
        least w positions back, s ≤ t−w with (t − s) mod w fixed); each averaged over queries t and the
        batch, all in [0, 1].
    """
    a = pattern.float().mean(0)  # [H, T, T]
    T, w = a.shape[-1], example_width(n_var)
    t = torch.arange(T)
    diag = lambda off: a[:, t[off:], t[off:] - off].mean(-1)
    offset = t[:, None] - t[None, :]
    stripes = torch.stack([(a * ((offset >= w) & (offset % w == r))).sum(-1)[:, 2 * w :].mean(-1) for r in range(w)])
    return {
        "previous": diag(1),
        "two_back": diag(2),
        "sink": a[:, 1:, 0].mean(-1),
        "self": diag(0),
        "stripe": stripes.max(0).values,
    }


def name_head(scores: dict[str, Tensor], h: int, threshold: float = 0.4) -> str:
    """The best-scoring kind of head ``h``, or 'diffuse' when no score reaches ``threshold``."""
    best = max(scores, key=lambda k: float(scores[k][h]))
    return best if float(scores[best][h]) >= threshold else "diffuse"


def centered_pca(
    features: Float[Tensor, "n_points dim"], n: int = 2
) -> tuple[Float[Tensor, "n_points n"], Float[Tensor, " n"]]:
    """Centred PCA with a fixed sign convention: each direction's largest-magnitude coordinate is
    positive (so repeated runs give the same picture).

    Args:
        features: [N, D] float.
    Returns:
        (projections [N, n], explained-variance fractions [n]).
    """
    x = features.double() - features.double().mean(0)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    v = vt[:n]
    sign = torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    v = v * sign
    return (x @ v.T).float(), (s[:n] ** 2 / (s**2).sum()).float()


def circularity(
    points: Float[Tensor, "n_points 2"], x: Int[Tensor, " n_points"], y: Int[Tensor, " n_points"]
) -> dict[str, float]:
    """How much a 2-D projection of the p² pairs is a "circle of circles" (PAPER.md §4.5).

    Args:
        points: [p², 2] projections; x, y: int64 [p²] the pair of each point.
    Returns:
        'x_separation': share of the variance explained by the per-x centroids (1: the plane is
        organised by x); 'outer_ring': 1 − CV of the centroids' distances to their mean (1: the
        centroids lie on a circle); 'inner_rings': the same within each x-group around its centroid,
        averaged over x (1: each group lies on a circle).
    """
    pts = points.double()
    xs = torch.unique(x)
    centroids = torch.stack([pts[x == v].mean(0) for v in xs])
    total = ((pts - pts.mean(0)) ** 2).sum()
    between = sum(((centroids[i] - pts.mean(0)) ** 2).sum() * (x == v).sum() for i, v in enumerate(xs))
    r = (centroids - centroids.mean(0)).norm(dim=1)
    inner = []
    for i, v in enumerate(xs):
        d = (pts[x == v] - centroids[i]).norm(dim=1)
        inner.append(1 - (d.std() / d.mean().clamp_min(1e-12)).item())
    return {
        "x_separation": float(between / total),
        "outer_ring": 1 - float(r.std() / r.mean().clamp_min(1e-12)),
        "inner_rings": float(sum(inner) / len(inner)),
    }


def cosine_matrix(vectors: Float[Tensor, "n_points dim"]) -> Float[Tensor, "n_points n_points"]:
    """[N, N] Pearson-style similarity of PAPER.md §4.6: each vector standardised over its dims (mean
    0, unbiased std + 1e-8), L2-normalised, then all dot products. vectors: [N, D]."""
    v = vectors.double()
    v = (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + 1e-8)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (v @ v.T).float()


def ratio_classes(pairs: Int[Tensor, "n_points n_var"], p: int) -> Int[Tensor, " n_points"]:
    """int64 [N]: the line through the origin of each (x, y): y·x⁻¹ for x ≠ 0, p for x = 0, −1 for (0, 0).
    Raises ValueError for inputs that are not pairs (n_var ≠ 2)."""
    _require_plane(pairs.shape[-1], "ratio classes")
    x, y = pairs[:, 0], pairs[:, 1]
    cls = torch.where(x != 0, (y * inverse_table(p)[x]) % p, torch.full_like(x, p))
    return torch.where((x == 0) & (y == 0), torch.full_like(x, -1), cls)


def ratio_invariance(
    sim: Float[Tensor, "n_points n_points"],
    pairs: Int[Tensor, "n_points n_var"],
    p: int,
    rows: Bool[Tensor, " n_points"] | None = None,
    cols: Bool[Tensor, " n_points"] | None = None,
) -> dict[str, float]:
    """Mean similarity of distinct pairs on the same line through the origin vs on different lines
    (the origin excluded); a large gap means the representation depends on (x, y) through y/x.

    Args:
        sim: [N, N] similarities of the N probe pairs (:func:`cosine_matrix`).
        pairs: int64 [N, 2] the probe pairs.
        p: the modulus.
        rows, cols: bool [N] masks (None: every pair): only the similarities of row pairs to column pairs
            count. Held-out inputs as rows and training inputs as columns ask whether the model places an
            input it never trained on with the training inputs of its line: a ratio feature that carries to
            held-out inputs (o.o.d. generalization) rather than one looked up per training pair.
    Returns:
        {"same_line", "different_line", "gap"}; NaN where no such pair of pairs exists.
    """
    cls = ratio_classes(pairs, p)
    keep = cls >= 0
    r = keep if rows is None else keep & rows
    c = keep if cols is None else keep & cols
    idx = torch.arange(len(cls))
    s, cr, cc = sim[r][:, c], cls[r], cls[c]
    same = cr[:, None] == cc[None, :]
    off = idx[r][:, None] != idx[c][None, :]
    mean = lambda m: float(s[m].mean()) if m.any() else math.nan
    a, b = mean(same & off), mean(~same)
    return {"same_line": a, "different_line": b, "gap": a - b}


@torch.no_grad()
def predict_last(
    model: nn.Module,  # a model with Transformer's protocol: forward(tokens, positions=…) → logits, max_len
    tokens: Int[Tensor, "batch seq"],
    batch_size: int = 1024,
    autocast: contextlib.AbstractContextManager | None = None,
    *,
    n_var: int,
) -> Int[Tensor, "batch n_ctx"]:
    """Argmax prediction at every z position: int64 [B, n_ctx] for full sequences [B, (n_var + 1)·n_ctx]."""
    out = []
    for chunk in tokens.split(batch_size):
        with autocast or contextlib.nullcontext():
            out.append(model(model_inputs(chunk), positions=query_slice(n_var)).argmax(-1))
    return torch.cat(out)


def kshot_grid(
    model: nn.Module,  # a model with Transformer's protocol: forward(tokens, positions=…) → logits, max_len
    task: tuple[int, ...],
    context: Int[Tensor, "n_shots n_var"],
    shots: list[int],
    p: int,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[int, dict[str, Tensor]]:
    """Correctness over all p² queries after k context examples (PAPER.md §4.7, Fig. 5).

    Args:
        context: int64 [K, 2] the context inputs (x_i, y_i) in order (their z is computed from task).
        shots: shot counts k ≤ K.
    Returns:
        {k: {'model': bool [p, p], 'ratio_matching': bool [p, p], 'difference': int [p, p] (model − RM),
        'accuracy': float tensor}} indexed [x, y].
    Raises:
        ValueError: a task that is not a pair (n_var ≠ 2: the grid is the (x, y) plane), a shot count
            larger than the context or larger than the model's context length.
    """
    _require_plane(len(task), "the k-shot grid")
    device = next(model.parameters()).device
    grid = all_inputs(p, device, n_var=2)
    w = torch.tensor(task, device=device)
    out = {}
    max_len = cast(int, model.max_len)
    for k in shots:
        if not 0 <= k <= len(context) or input_length(k + 1, 2) > max_len:
            raise ValueError(
                f"shot count {k} needs k ≤ {len(context)} context examples and 3(k+1)−1 ≤ {max_len} tokens"
            )
        ctx = context[:k].to(device)
        xy = torch.cat([ctx.expand(p * p, -1, -1), grid[:, None]], dim=1)  # [p², k+1, 2]
        z = task_labels(xy, w, p)
        tokens = torch.cat([xy, z[..., None]], dim=-1).flatten(1)
        pred = predict_last(model, tokens, autocast=autocast, n_var=2)[:, -1]
        correct = pred == z[:, -1]
        rm = ratio_matching(xy[:, :k], z[:, :k], grid, p) == z[:, -1] if k else (grid == 0).all(-1)
        out[k] = {
            "model": correct.view(p, p).cpu(),
            "ratio_matching": rm.view(p, p).cpu(),
            "difference": (correct.int() - rm.int()).view(p, p).cpu(),
            "accuracy": correct.float().mean().cpu(),
        }
    return out


def algorithm_curves(
    model: nn.Module,  # a model with Transformer's protocol: forward(tokens, positions=…) → logits, max_len
    tasks: Int[Tensor, "n_tasks n_var"],
    pairs: Int[Tensor, "n_pairs n_var"],
    id_tasks: Int[Tensor, "n_id n_var"],
    n_ctx: int,
    p: int,
    sequences: int,
    generator: torch.Generator,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, list[float]]:
    """k-shot accuracy of the model and of the reference algorithms on the same sequences, and how
    often the model's prediction equals each algorithm's (PAPER.md §4.1–4.3).

    Args:
        tasks: int64 [n_tasks, n_var] the tasks to test (e.g. the o.o.d. set); pairs: the inputs to draw.
        id_tasks: the pre-training tasks (for the Bayes predictor).
        sequences: sequences per task.
    Returns:
        {'model', 'ratio_matching', 'modular_regression', 'bayes_id': accuracy at k = 0…n_ctx−1;
         'agree_ratio_matching', 'agree_modular_regression', 'agree_bayes_id': share of predictions
         equal to the algorithm's, among positions where the algorithm predicts}.
    """
    device = next(model.parameters()).device
    n_var = tasks.shape[-1]
    tokens = sample_sequences(tasks.to(device), pairs.to(device), sequences, n_ctx, p, generator, shared_inputs=False)
    pred = predict_last(model, tokens, autocast=autocast, n_var=n_var).cpu()
    xy, z = examples(tokens.cpu(), n_var)
    algos = {
        "ratio_matching": lambda c, cz, q: ratio_matching(c, cz, q, p),
        "modular_regression": lambda c, cz, q: modular_regression(c, cz, q, p),
        "bayes_id": lambda c, cz, q: bayes_id(c, cz, q, id_tasks.cpu(), p)[0],
    }
    out: dict[str, list[float]] = {"model": (pred == z).float().mean(0).tolist()}
    for name, fn in algos.items():
        acc, agree = [], []
        for k in range(n_ctx):
            if k == 0 and name != "bayes_id":  # no example: only the origin is known (z = 0)
                a = torch.where((xy[:, 0] == 0).all(-1), 0, -1)
            else:
                a = fn(xy[:, :k], z[:, :k], xy[:, k])
            acc.append(float((a == z[:, k]).float().mean()))
            has = a >= 0
            agree.append(float((pred[:, k][has] == a[has]).float().mean()) if has.any() else float("nan"))
        out[name], out[f"agree_{name}"] = acc, agree
    return out


def label_noise(
    model: nn.Module,  # a model with Transformer's protocol: forward(tokens, positions=…) → logits, max_len
    tasks: Int[Tensor, "n_tasks n_var"],
    pairs: Int[Tensor, "n_pairs n_var"],
    n_ctx: int,
    p: int,
    sequences: int,
    generator: torch.Generator,
    autocast: contextlib.AbstractContextManager | None = None,
) -> list[float]:
    """Last-position accuracy with j = 0…n_ctx−1 corrupted context labels (PAPER.md §4.8 (i)): a label is
    corrupted by z ← z + r mod p with r uniform on 1…p−1 (always wrong), at j random context positions;
    the scored last label stays clean. Returns the accuracy for each j."""
    device = next(model.parameters()).device
    n_var = tasks.shape[-1]
    clean = sample_sequences(tasks.to(device), pairs.to(device), sequences, n_ctx, p, generator, shared_inputs=False)
    out = []
    for j in range(n_ctx):
        tok = clean.clone().view(len(clean), n_ctx, example_width(n_var))
        if j:
            order = torch.rand(len(tok), n_ctx - 1, generator=generator, device=device).argsort(-1)[:, :j]
            shift = torch.randint(1, p, (len(tok), j), generator=generator, device=device)
            rows = torch.arange(len(tok), device=device)[:, None]
            tok[rows, order, n_var] = (tok[rows, order, n_var] + shift) % p
        tok = tok.flatten(1)
        pred = predict_last(model, tok, autocast=autocast, n_var=n_var)[:, -1]
        out.append(float((pred == tok[:, -1]).float().mean()))
    return out


@torch.no_grad()
def logit_lens(model: Transformer, tokens: Int[Tensor, "batch seq"], batch_size: int = 512) -> list[float]:
    """Last-position accuracy when the residual stream after each block is read out through the final
    LayerNorm and the unembedding (PAPER.md §4.8); the last entry equals the model's accuracy.
    tokens: full sequences [B, (n_var + 1)·n_ctx], run ``batch_size`` at a time; the last token is the
    scored label whatever n_var."""
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    last: dict[str, list[Tensor]] = {n: [] for n in names}  # only the last position is read: keep only it
    hooks = {n: (lambda t, n=n: last[n].append(t[:, -1])) for n in names}
    for chunk in model_inputs(tokens).split(batch_size):
        model(chunk, hooks=hooks)
    target = tokens[:, -1]
    out = []
    for n in names:
        logits = model.ln_f(torch.cat(last[n])) @ model.wte.weight.T
        out.append(float((logits.argmax(-1) == target).float().mean()))
    return out
