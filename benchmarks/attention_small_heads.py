"""Is there a faster CPU attention for the demo's small heads than ATen's flash attention (SDPA)?

The candidate: explicit causal attention over a few of the batch × head slices at a time (``baddbmm``,
softmax, ``bmm``), so the [chunk, T, T] scores stay in the caches, with the softmax recomputed in the
backward instead of stored (as flash attention does). Timed forward + backward against SDPA at the quick-p11
shapes (batch 64, 4 heads, 96 tokens, head dim 16): the first block (causal, all positions) and the last
block (queries at the 32 z positions only), one thread, after a check that both give the same output and
gradients within fp32 rounding. For BENCHMARKS.md ("The AVX2-only EPYC").

    python benchmarks/attention_small_heads.py                  # one thread, 30 timed calls per variant
    python benchmarks/attention_small_heads.py --threads 2 --reps 50

Run it on a quiet machine and name the CPU kind (printed first) with the numbers.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F

from modicl.runtime import cpu_kind


class ChunkedAttention(torch.autograd.Function):
    """softmax(q kᵀ / √D + mask) v over ``chunk`` slices at a time; q [N, Tq, D], k and v [N, T, D],
    mask [Tq, T] additive (0 or -inf); the backward recomputes the probabilities chunk by chunk."""

    @staticmethod
    def forward(ctx, q, k, v, mask, chunk):
        scale = 1 / math.sqrt(q.shape[-1])
        out = torch.empty_like(q)
        for i in range(0, q.shape[0], chunk):
            s = slice(i, i + chunk)
            p = torch.softmax(torch.baddbmm(mask, q[s], k[s].transpose(1, 2), alpha=scale), -1)
            torch.bmm(p, v[s], out=out[s])
        ctx.save_for_backward(q, k, v, mask, out)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, out = ctx.saved_tensors
        scale = 1 / math.sqrt(q.shape[-1])
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        delta = (grad_out * out).sum(-1, keepdim=True)  # rowsum(dP ∘ P) of the softmax backward
        for i in range(0, q.shape[0], ctx.chunk):
            s = slice(i, i + ctx.chunk)
            p = torch.softmax(torch.baddbmm(mask, q[s], k[s].transpose(1, 2), alpha=scale), -1)
            torch.bmm(p.transpose(1, 2), grad_out[s], out=dv[s])
            ds = torch.bmm(grad_out[s], v[s].transpose(1, 2)).sub_(delta[s]).mul_(p)
            torch.bmm(ds, k[s], out=dq[s]).mul_(scale)
            torch.bmm(ds.transpose(1, 2), q[s], out=dk[s]).mul_(scale)
        return dq, dk, dv, None, None


def _time_ms(fn, inputs, reps: int) -> float:
    for _ in range(3):
        fn(*inputs).sum().backward()
    t = time.perf_counter()
    for _ in range(reps):
        fn(*inputs).sum().backward()
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a demo run)")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per variant, after 3 untimed (default 30)")
    args = ap.parse_args()
    for name in ("threads", "reps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, h, t, d = 64, 4, 96, 16
    causal = torch.full((t, t), float("-inf")).triu(1)
    print(f"CPU kind {cpu_kind()}, torch {torch.__version__}, {args.threads} thread(s); fwd + bwd, ms per call")
    for block, rows in (
        ("first block (all 96 positions)", torch.arange(t)),
        ("last block (32 queries)", torch.arange(2, t, 3)),
    ):
        mask = causal[rows]
        tq = len(rows)
        q = torch.randn(b, h, tq, d, requires_grad=True)
        k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(2))

        def sdpa(q, k, v, mask=mask, tq=tq):
            if tq == t:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def chunked(q, k, v, chunk, mask=mask, tq=tq):
            flat = (x.reshape(b * h, -1, d) for x in (q, k, v))
            return ChunkedAttention.apply(*flat, mask, chunk).view(b, h, tq, d)

        g = torch.randn(b, h, tq, d)
        ref = torch.autograd.grad(sdpa(q, k, v), (q, k, v), g)
        got = torch.autograd.grad(chunked(q, k, v, 32), (q, k, v), g)
        err = max((x - y).abs().max().item() for x, y in zip(ref, got))
        assert err < 1e-4, f"chunked attention's gradients differ from SDPA's by {err}"
        times = {"sdpa": _time_ms(sdpa, (q, k, v), args.reps)}
        for chunk in (256, 64, 32, 16):
            times[f"chunk {chunk}"] = _time_ms(lambda q, k, v, c=chunk: chunked(q, k, v, c), (q, k, v), args.reps)
        print(
            f"{block}: " + ", ".join(f"{name} {ms:.1f}" for name, ms in times.items()) + f" (max grad diff {err:.1e})"
        )


if __name__ == "__main__":
    main()
