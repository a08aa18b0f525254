"""Where a training step's time goes: torch.profiler over the steps of a preset, the self CPU time of
every operator grouped by what it does (matmuls, attention, element-wise work, the optimizer, sampling the
batch, the rest), with each group's share of the profiled time. For BENCHMARKS.md.

    python scripts/profile_step.py                          # quick-p11, fp32, one thread, 50 steps
    python scripts/profile_step.py --preset quick-muon --threads 2 --top 15

Run it on a quiet machine: other jobs on the same cores change the shares. Name the CPU kind with the
numbers (printed on the first line; the AVX2 code path with ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2).
"""

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from modicl.allocator import keep_freed_memory
from modicl.data import sample_sequences
from modicl.model import build_model
from modicl.presets import preset
from modicl.runtime import autocast_for, cpu_kind
from modicl.steps import TrainStep, build_optimizer
from modicl.tasks import make_task_set

# operator name fragments → group; the first match wins, so the specific names come first
GROUPS = (
    ("optimizer element-wise work (Muon, AdamW)", ("optimizer.", "Optimizer.step", "muon", "adam", "_foreach")),
    ("attention (SDPA forward and backward)", ("scaled_dot_product", "_flash_attention", "attention")),
    (
        "matmuls (linear layers, forward and backward)",
        ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
    ),
    ("ReLU and its backward", ("threshold_backward", "aten::relu", "aten::clamp_min")),
    ("layer norm", ("layer_norm",)),
    ("embedding, loss and softmax", ("embedding", "cross_entropy", "nll_loss", "log_softmax", "_softmax")),
    (
        "copies, casts and allocations",
        ("aten::copy_", "aten::to", "aten::_to_copy", "aten::empty", "aten::zeros", "aten::clone", "contiguous"),
    ),
    (
        "other element-wise",
        ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::fill_", "aten::sum", "aten::where"),
    ),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick-p11")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--top", type=int, default=10, help="also list the N costliest operators")
    args = ap.parse_args()
    keep_freed_memory()  # as `modicl train` and sweep workers do; the step is ≈ 15 % slower without it
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    device = torch.device("cpu")
    tasks = make_task_set(cfg.task, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.train, device)
    step = TrainStep(
        model,
        opt,
        autocast_for(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32),
        False,
        cfg.train.compile_mode,
        n_var=cfg.task.n_var,
    )
    id_tasks, pairs = torch.as_tensor(tasks.id_tasks), torch.as_tensor(tasks.train_pairs)
    gen = torch.Generator().manual_seed(0)
    per_task = cfg.train.batch_size // cfg.task.n_id

    def one() -> None:
        with record_function("sample_batch"):
            tokens = sample_sequences(id_tasks, pairs, per_task, cfg.task.n_ctx, cfg.task.p, gen)
        step(tokens)

    for _ in range(10):
        one()
    t = time.perf_counter()
    for _ in range(args.steps):
        one()
    plain = (time.perf_counter() - t) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            one()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        name = e.key
        if name == "sample_batch":
            continue
        group = next(
            (g for g, frags in GROUPS if any(f.lower() in name.lower() for f in frags)),
            "the rest (Python, autograd bookkeeping, views)",
        )
        groups[group] += e.self_cpu_time_total
    sample = next((e.cpu_time_total for e in events if e.key == "sample_batch"), 0.0)
    # the optimizers' own ranges (torch.optim names them Optimizer.step#CLASS.step), inclusive of the
    # matmuls of Muon's Newton-Schulz iteration, which the groups above count as matmuls
    optim = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#"))
    print(
        f"{args.preset}, {args.dtype}, {args.threads} thread(s), CPU kind {cpu_kind()}, torch {torch.__version__}: "
        f"{plain * 1e3:.1f} ms per step unprofiled ({1 / plain:.2f} steps/s), {args.steps} steps profiled"
    )
    print(f"{'group':<50} {'share':>7}")
    for g, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{g:<50} {v / total:>7.1%}")
    print(f"{'sampling the batch (inclusive)':<50} {sample / total:>7.1%}")
    print(f"{'optimizer steps (inclusive)':<50} {optim / total:>7.1%}")
    print(f"\nthe {args.top} costliest operators (self CPU time):")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"  {e.key:<48} {e.self_cpu_time_total / total:>7.1%}  ({e.count // args.steps} calls per step)")


if __name__ == "__main__":
    main()
