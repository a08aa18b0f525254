"""Hidden-progress measures of the attention, cheap enough to log at every evaluation.

Before the loss leaves its plateau, the circuits the task needs form underneath it (Nanda et al. 2023,
"Progress measures for grokking"; Olsson et al. 2022 on induction heads). For this task the paper's
trained models (PAPER.md §4, attention maps) have a layer-0 head that reads the previous token at the y
positions (x of the same example), one that reads two back (z of the previous example), and later heads
that read the z tokens of earlier examples. These scores track each of them over training. With n_var
inputs per example (:mod:`modicl.family`) the scores are read at the last input of every example (the
position that predicts z), and the offsets stay one and two tokens back.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .data import model_inputs
from .family import label_slice, query_slice
from .model import Transformer


@torch.no_grad()
def attention_scores(
    model: Transformer, tokens: Int[Tensor, "batch seq"], autocast=None, *, n_var: int
) -> dict[str, list[float]] | None:
    """For every layer, the largest over heads of the mean attention weight that the y positions (the
    positions whose logits predict z) give to: the previous token (``prev_token``), the token two back
    (``two_back``), and all earlier z tokens together (``z_tokens``).

    Args:
        model: the decoder (switched to eval mode for the call and restored).
        tokens: int64 [B, (n_var + 1)·n_ctx] sequences; all but their last token are read.
        autocast: a context manager for the forward pass (None: none).
        n_var: inputs per example (2: the tokens are x y z triples).
    Returns:
        {"prev_token" | "two_back" | "z_tokens": [n_layers floats in 0…1]}, or None for a one-example
        context (no y position has two tokens before it). Attention at initialisation is near uniform over the causal
        prefix, so every score
        starts small (≈ 1/position).
    """
    x = model_inputs(tokens)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.cfg.n_layers)]
    was_training = model.training
    model.eval()
    try:
        with autocast if autocast is not None else torch.autocast("cpu", enabled=False):
            _, cache = model.run_with_cache(x, names)
    finally:
        model.train(was_training)
    return scores_from_patterns([cache[n] for n in names], n_var=n_var)


def scores_from_patterns(
    patterns: list[Float[Tensor, "batch heads seq seq"]], *, n_var: int
) -> dict[str, list[float]] | None:
    """The scores of :func:`attention_scores` from attention patterns, one [B, H, T, T] tensor per layer
    (rows: query positions, each a distribution over key positions ≤ the query)."""
    T = patterns[0].shape[-1]
    dev = patterns[0].device
    out: dict[str, list[float]] = {"prev_token": [], "two_back": [], "z_tokens": []}
    positions = torch.arange(T, device=dev)
    q = positions[query_slice(n_var)][1:]  # the predicting positions of examples 1… (two back exists)
    if len(q) == 0:  # a context of one example has no predicting position with two tokens before it
        return None
    is_z = torch.zeros(T, dtype=torch.bool, device=dev)
    is_z[label_slice(n_var)] = True
    for pattern in patterns:
        pat = pattern.float()[:, :, q, :]  # [B, H, Q, T]
        idx = lambda back: (q - back).view(1, 1, -1, 1).expand(*pat.shape[:3], 1)  # noqa: E731
        scores = {
            "prev_token": pat.gather(-1, idx(1)).mean((0, 2, 3)),
            "two_back": pat.gather(-1, idx(2)).mean((0, 2, 3)),
            "z_tokens": (pat * is_z).sum(-1).mean((0, 2)),
        }
        for k, v in scores.items():
            out[k].append(round(v.max().item(), 4))
    return out
