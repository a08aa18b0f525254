"""Does torch.compile compute what eager computes on this CPU? One batch of a preset's model, forward and
backward, eager and compiled from the same weights; prints the largest logit difference and every
parameter whose gradient differs by more than --tol (or is not finite). BENCHMARKS.md has what it found.

    python benchmarks/compile_check.py                       # quick-p11, one thread
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/compile_check.py --threads 1
"""

import argparse

import torch

from modicl.compiling import relative_difference
from modicl.data import model_inputs, sample_sequences
from modicl.family import query_slice
from modicl.model import build_model
from modicl.presets import preset
from modicl.steps import COMPILE_TOLERANCE
from modicl.tasks import make_task_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick-p11")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    tasks = make_task_set(cfg.task, cfg.seed)
    tokens = sample_sequences(
        torch.as_tensor(tasks.id_tasks),
        torch.as_tensor(tasks.train_pairs),
        1,
        cfg.task.n_ctx,
        cfg.task.p,
        torch.Generator().manual_seed(0),
    )

    def forward_backward(fn):
        model.zero_grad(set_to_none=True)
        logits = fn(model_inputs(tokens), positions=query_slice(cfg.task.n_var))
        logits.float().logsumexp(-1).mean().backward()
        return logits.detach().clone(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    eager_logits, eager_grads = forward_backward(model)
    comp_logits, comp_grads = forward_backward(torch.compile(model))
    print(
        f"{args.preset}, {args.threads} thread(s): logits max |eager - compiled| "
        f"{(eager_logits - comp_logits).abs().max().item():.2e}, finite {torch.isfinite(comp_logits).all().item()}"
    )
    bad = 0
    for name, g in eager_grads.items():
        diff = (g - comp_grads[name]).abs().max().item()
        if diff > args.tol or not torch.isfinite(comp_grads[name]).all():
            bad += 1
            print(f"  gradient of {name}: max |difference| {diff:.3g}")
    print("compiled matches eager" if bad == 0 else f"{bad} gradient(s) differ beyond {args.tol}")
    rel = relative_difference(list(eager_grads.values()), [comp_grads[n] for n in eager_grads])
    print(
        f"gradients together: relative L2 difference {rel:.2e} (a training step falls back to eager above "
        f"{COMPILE_TOLERANCE['fp32']:g} in fp32)"
    )


if __name__ == "__main__":
    main()
