"""Batches of in-context sequences, built as integer tensors directly on the target device.

A sequence holds n_ctx examples of one task written as tokens x1 y1 z1 x2 y2 z2 … (PAPER.md §1.3; with
n_var inputs per example, n_var + 1 tokens each, as :mod:`modicl.family` lays them out); the model reads
all but the last token and is scored only on the z tokens, each predicted from the logits at the last
input token just before it. Batches are balanced: every task gets the same number of sequences, laid
out task-major (PAPER.md §1.8). With ``shared_inputs`` every task's j-th sequence uses the same input
stream, as in the official code; otherwise inputs are drawn per sequence. A batch is a handful of
tensor ops: no Python loop over examples, no DataLoader.
"""

from __future__ import annotations

import torch
from jaxtyping import Int, Shaped
from torch import Tensor

from .family import label_slice, query_slice, sequence_length, task_labels


def sample_sequences(
    tasks: Int[Tensor, "n_tasks n_var"],
    pairs: Int[Tensor, "n_pairs n_var"],
    seqs_per_task: int,
    n_ctx: int,
    p: int,
    generator: torch.Generator,
    shared_inputs: bool = True,
    replacement: bool = True,
    burst: tuple[int, float] | None = None,
) -> Int[Tensor, "batch seq"]:
    """Draw ``seqs_per_task`` sequences of ``n_ctx`` examples for every task.

    Args:
        tasks: int64 [n_tasks, n_var] task vectors ((a, b) for n_var = 2), on the target device.
        pairs: int64 [n_pairs, n_var] the inputs ((x, y) pairs for n_var = 2) to draw from, same device.
        seqs_per_task: sequences per task (bs / n_id in training).
        n_ctx: examples per sequence.
        p: the modulus.
        generator: a torch.Generator on the same device; its state fully determines the batch.
        shared_inputs: one input stream per sequence slot shared by all tasks (official behaviour).
        replacement: draw the n_ctx pairs of a sequence with replacement; else without replacement
            where the pool allows it: every pair once before any repeats (successive random
            permutations of the pool, so a sequence longer than the pool repeats each pair as
            evenly as possible).
        burst: (k, share) for a bursty curriculum: each sequence stream, with probability ``share``,
            draws its n_ctx pairs with replacement from its own random k pairs of the pool, so most
            queries repeat an earlier input (copying pays early). None (or share 0) draws nothing extra,
            so the stream is the same as without the option.

    Returns:
        int64 [n_tasks · seqs_per_task, (n_var + 1)·n_ctx]; rows t·seqs_per_task … (t+1)·seqs_per_task − 1
        hold task t; row layout x1 y1 z1 … x_n y_n z_n with z = a·x + b·y mod p (n_var = 2), in general
        the n_var inputs of each example and then z = w·x mod p.
    """
    n_tasks, n_pairs = tasks.shape[0], pairs.shape[0]
    streams = 1 if shared_inputs else n_tasks
    shape = (streams, seqs_per_task, n_ctx)
    if replacement:
        idx = torch.randint(n_pairs, shape, generator=generator, device=pairs.device)
    else:
        n_perm = -(-n_ctx // n_pairs)  # one permutation when the pool suffices (the draws of a plain shuffle)
        keys = torch.rand((*shape[:2], n_perm, n_pairs), generator=generator, device=pairs.device)
        idx = keys.argsort(dim=-1).flatten(-2)[..., :n_ctx]
    if burst is not None and burst[1] > 0:
        k, share = burst
        subset = torch.rand((*shape[:2], n_pairs), generator=generator, device=pairs.device).argsort(dim=-1)[..., :k]
        pick = torch.randint(min(k, n_pairs), shape, generator=generator, device=pairs.device)
        bursty = torch.rand(shape[:2], generator=generator, device=pairs.device) < share
        idx = torch.where(bursty[..., None], subset.gather(-1, pick), idx)
    xy = pairs[idx].expand(n_tasks, -1, -1, -1)  # [n_tasks, seqs, n_ctx, n_var]
    ab = tasks[:, None, None, :]
    z = task_labels(xy, ab, p)
    seq = torch.cat([xy, z[..., None]], dim=-1)  # [n_tasks, seqs, n_ctx, n_var + 1]
    return seq.reshape(n_tasks * seqs_per_task, sequence_length(n_ctx, tasks.shape[-1]))


def model_inputs(tokens: Int[Tensor, "batch seq"]) -> Int[Tensor, "batch seq-1"]:
    """The tokens the model reads: all but the last. int64 [B, (n_var + 1)·n_ctx] → [B, (n_var + 1)·n_ctx − 1]."""
    return tokens[:, :-1]


def z_targets(tokens: Int[Tensor, "batch seq"], *, n_var: int) -> Int[Tensor, "batch n_ctx"]:
    """The supervised z tokens. int64 [B, (n_var + 1)·n_ctx] → [B, n_ctx]; column k is the k-shot target."""
    return tokens[:, label_slice(n_var)]


def z_logits(logits: Shaped[Tensor, "batch seq vocab"], *, n_var: int) -> Shaped[Tensor, "batch n_ctx vocab"]:
    """Logits at the last input of every example (the y positions for n_var = 2), which predict the z
    tokens. [B, (n_var + 1)·n_ctx − 1, V] → [B, n_ctx, V]."""
    return logits[:, query_slice(n_var)]
