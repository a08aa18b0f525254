"""Time the authors' training step on modicl's reference config, to compare with ``modicl bench``.

The step is the official code's (github.com/ablghtianyi/ICL_Modular_Arithmetic, ``_src/models.py``):
their ``RoPETransformer`` with ``RoPEFlashAttention``, their AdamW groups (weight decay on matrices only),
their linear warm-up scheduler, their loss (mean over the z tokens) and the per-step running accuracy
their loop reads. The config is modicl's ``bench`` preset: p 29, d_model 128, 2 layers, 4 heads, ReLU
MLP of width 4·d_model, batch 128 sequences of 32 examples (96 tokens, 95 read), fp32, eager. Batches are
drawn once (8 of them, cycled) so the data loader costs nothing on either side; ``modicl bench`` also
times the step alone.

Usage (the authors' code and its two dependencies are not modicl's; install them beside it):

    git clone https://github.com/ablghtianyi/ICL_Modular_Arithmetic /tmp/authors
    pip install rotary-embedding-torch einops
    python benchmarks/authors_step.py --authors-repo /tmp/authors --threads 2 --steps 20
    modicl bench --preset bench --dtypes fp32 --steps 20 --train.threads 2

Run the two alternately, several rounds, on a quiet machine; BENCHMARKS.md records the ratios.
Prints one line: steps/s and tokens/s (95 tokens per sequence, as ``modicl bench`` counts them).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

P, N_CTX, BATCH, D_MODEL, N_LAYERS, N_HEADS = 29, 32, 128, 128, 2, 4


def _batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # One task vector per sequence; targets only at the z tokens (-100 elsewhere), shifted by one.
    w = torch.randint(P, (BATCH, 1, 2), generator=g)
    xy = torch.randint(P, (BATCH, N_CTX, 2), generator=g)
    z = (xy * w).sum(-1) % P
    seq = torch.cat([xy, z[..., None]], -1).view(BATCH, -1)
    tgt = seq.clone().view(BATCH, N_CTX, 3)
    tgt[..., :2] = -100
    return seq[:, :-1].contiguous(), tgt.view(BATCH, -1)[:, 1:].contiguous()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors-repo", type=Path, required=True, help="a clone of ICL_Modular_Arithmetic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps, after --warmup untimed ones")
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    if not (a.authors_repo / "_src" / "models.py").is_file():
        ap.error(f"{a.authors_repo} holds no _src/models.py: pass a clone of ICL_Modular_Arithmetic")
    sys.path.insert(0, str(a.authors_repo))
    from _src.models import RoPEFlashAttention, RoPETransformer  # noqa: PLC0415 (path known only now)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = types.SimpleNamespace(
        vocab_size=P + 2,
        n_embd=D_MODEL,
        dp=0.0,
        n_layer=N_LAYERS,
        if_ln=True,
        act_name="relu",
        widen_factor=4,
        n_head=N_HEADS,
        s=0.0,
        model_name="rope_decoder",
        weight_tying=True,
        block_size=512,
    )
    model = RoPETransformer(RoPEFlashAttention, cfg).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [q for q in params if q.ndim <= 1], "weight_decay": 0.0},
            {"params": [q for q in params if q.ndim > 1], "weight_decay": 2.0},
        ],
        lr=1.5e-4,
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(0.01 + s / 10_000 * 0.99, 1.0))
    g = torch.Generator().manual_seed(0)
    data = [_batch(g) for _ in range(8)]

    def step(i: int) -> None:
        x, y = data[i % len(data)]
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-100, reduction="none")
        loss = losses[losses > 0.0].mean()
        loss.item()
        loss.backward()
        opt.step()
        sched.step()
        with torch.inference_mode():  # the running accuracy their loop computes every step
            valid = (y != -100) & (y < P)
            pred = torch.masked_select(logits.argmax(-1), valid)
            (pred == torch.masked_select(y, valid)).float().mean().item()

    for i in range(a.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(a.steps):
        step(i)
    dt = time.perf_counter() - t0
    tokens = BATCH * (3 * N_CTX - 1)
    print(f"authors' step: {a.steps / dt:.3f} steps/s, {a.steps * tokens / dt:,.0f} tokens/s, threads {a.threads}")


if __name__ == "__main__":
    main()
