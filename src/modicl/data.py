"""Batches of in-context sequences, built as integer tensors directly on the target device.

A sequence holds n_ctx examples of one task written as tokens x1 y1 z1 x2 y2 z2 … (PAPER.md §1.3);
the model reads all but the last token and is scored only on the z tokens, each predicted from the
logits at the y token just before it. Batches are balanced: every task gets the same number of
sequences, laid out task-major (PAPER.md §1.8). With ``shared_inputs`` every task's j-th sequence
uses the same (x, y) stream, as in the official code; otherwise inputs are drawn per sequence. A batch
is a handful of tensor ops: no Python loop over examples, no DataLoader.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .tasks import task_labels


def sample_sequences(
    tasks: Tensor,
    pairs: Tensor,
    seqs_per_task: int,
    n_ctx: int,
    p: int,
    generator: torch.Generator,
    shared_inputs: bool = True,
    replacement: bool = True,
    burst: tuple[int, float] | None = None,
) -> Tensor:
    """Draw ``seqs_per_task`` sequences of ``n_ctx`` examples for every task.

    Args:
        tasks: int64 [n_tasks, 2] task vectors (a, b), on the target device.
        pairs: int64 [n_pairs, 2] the input pairs (x, y) to draw from, same device.
        seqs_per_task: sequences per task (bs / n_id in training).
        n_ctx: examples per sequence.
        p: the modulus.
        generator: a torch.Generator on the same device; its state fully determines the batch.
        shared_inputs: one (x, y) stream per sequence slot shared by all tasks (official behaviour).
        replacement: draw the n_ctx pairs of a sequence with replacement; else without replacement
            where the pool allows it: every pair once before any repeats (successive random
            permutations of the pool, so a sequence longer than the pool repeats each pair as
            evenly as possible).
        burst: (k, share) for a bursty curriculum: each sequence stream, with probability ``share``,
            draws its n_ctx pairs with replacement from its own random k pairs of the pool, so most
            queries repeat an earlier input (copying pays early). None (or share 0) draws nothing extra,
            so the stream is the same as without the option.

    Returns:
        int64 [n_tasks · seqs_per_task, 3·n_ctx]; rows t·seqs_per_task … (t+1)·seqs_per_task − 1 hold
        task t; row layout x1 y1 z1 … x_n y_n z_n with z = a·x + b·y mod p.
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
    xy = pairs[idx].expand(n_tasks, -1, -1, -1)  # [n_tasks, seqs, n_ctx, 2]
    ab = tasks[:, None, None, :]
    z = task_labels(xy, ab, p)
    seq = torch.cat([xy, z[..., None]], dim=-1)  # [n_tasks, seqs, n_ctx, 3]
    return seq.reshape(n_tasks * seqs_per_task, 3 * n_ctx)


def model_inputs(tokens: Tensor) -> Tensor:
    """The tokens the model reads: all but the last. int64 [B, 3·n_ctx] → [B, 3·n_ctx − 1]."""
    return tokens[:, :-1]


def z_targets(tokens: Tensor) -> Tensor:
    """The supervised z tokens. int64 [B, 3·n_ctx] → [B, n_ctx]; column k is the k-shot target."""
    return tokens[:, 2::3]


def z_logits(logits: Tensor) -> Tensor:
    """Logits at the y positions, which predict the z tokens. [B, 3·n_ctx − 1, V] → [B, n_ctx, V]."""
    return logits[:, 1::3]
