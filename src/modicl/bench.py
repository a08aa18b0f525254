"""Training-throughput benchmark: steps/s, tokens/s, model FLOP/s and the ratio to a matmul ceiling.

Model FLOPs per step are the model's own count (:func:`modicl.model.train_flops_per_step`). The
ceiling is a square-ish matmul of the model's largest shape, (B·T × d) @ (d × mlp_ratio·d), timed on the
spot in the same dtype and thread count.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import torch

from .config import RunConfig
from .data import sample_sequences
from .family import input_length
from .model import build_model, train_flops_per_step
from .runtime import autocast_for, resolve_compile, restores_threads, setup_process
from .steps import TrainStep, build_optimizer
from .tasks import make_task_set

# Dense bf16 tensor-core peak FLOP/s (no sparsity) by device name, from the vendors' data sheets; the
# first key contained in torch.cuda.get_device_name() wins, so specific names come before general ones.
PEAK_BF16_TFLOPS = {
    "GH200": 989.0,
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H800": 989.0,
    "B200": 2250.0,
    "B100": 1750.0,
    "A100": 312.0,
    "A800": 312.0,
    "A10G": 70.0,
    "A10": 125.0,
    "A30": 165.0,
    "A40": 149.7,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 6000 Ada": 364.0,
    "RTX 4090": 165.0,
    "RTX A6000": 154.8,
    "RTX 3090": 71.0,
}


def device_peak_flops(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the CUDA device called ``name`` (as ``torch.cuda.get_device_name``
    writes it) from :data:`PEAK_BF16_TFLOPS`, or None for a device not in the table (or a CPU)."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def matmul_ceiling(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeats: int = 20) -> float:
    """Measured FLOP/s of an [m, k] @ [k, n] matmul in ``dtype`` on ``device``."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2.0 * m * k * n * repeats / (time.perf_counter() - t)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@restores_threads
def benchmark(cfg: RunConfig, dtype: str = "bf16", steps: int = 20, warmup: int = 5) -> dict:
    """Time ``steps`` training steps of ``cfg`` (after ``warmup``) in ``dtype`` ('fp32' or 'bf16').

    Returns:
        {'dtype', 'device', 'threads', 'attention', 'compile' (whether the timed steps ran compiled: False
         after a compiler failure), 'compile_mode', 'graph_breaks' (None when not compiled),
         'compile_error', 'first_step_s' (includes compilation), 'peak_memory_gb' (CUDA only, else None),
         'loss' (the last step's), 'steps_per_s', 'tokens_per_s', 'gflop_per_step', 'gflop_per_s',
         'ceiling_gflop_per_s', 'ratio_to_ceiling'}; tokens are the model's input tokens,
         batch_size · ((n_var + 1)·n_ctx − 1) per step. ``warmup`` ≥ 1.
    """
    device, _ = setup_process(cfg.train)
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    tasks = make_task_set(cfg.task, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    opt = build_optimizer(model, cfg.train, device)
    compile_on = resolve_compile(cfg.train.compile, device)
    step = TrainStep(model, opt, autocast_for(device, tdtype), compile_on, cfg.train.compile_mode, n_var=cfg.task.n_var)
    id_tasks = torch.as_tensor(tasks.id_tasks, device=device)
    pairs = torch.as_tensor(tasks.train_pairs, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    per_task = cfg.train.batch_size // cfg.task.n_id

    def one() -> torch.Tensor:
        tokens = sample_sequences(id_tasks, pairs, per_task, cfg.task.n_ctx, cfg.task.p, gen)
        return step(tokens)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    one()  # the first step compiles, when compiling
    _sync(device)
    first_s = time.perf_counter() - t
    for _ in range(warmup - 1):
        one()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    loss.item()
    _sync(device)
    dt = (time.perf_counter() - t) / steps
    flops = train_flops_per_step(cfg)
    B, T, d = cfg.train.batch_size, input_length(cfg.task.n_ctx, cfg.task.n_var), cfg.model.d_model
    ceiling = matmul_ceiling(B * T, d, cfg.model.mlp_ratio * d, tdtype, device)
    sig = lambda x: float(f"{x:.4g}")  # 4 significant figures, whatever the model's size
    return {
        "dtype": dtype,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "attention": cfg.model.attention,
        "compile": step.compiled,
        "compile_mode": cfg.train.compile_mode,
        "graph_breaks": step.graph_breaks,
        "compile_error": step.compile_error,
        "first_step_s": sig(first_s),
        "peak_memory_gb": sig(torch.cuda.max_memory_allocated(device) / 1e9) if device.type == "cuda" else None,
        "loss": sig(loss.item()),
        "steps_per_s": sig(1 / dt),
        "tokens_per_s": round(B * T / dt),
        "gflop_per_step": sig(flops / 1e9),
        "gflop_per_s": sig(flops / dt / 1e9),
        "ceiling_gflop_per_s": sig(ceiling / 1e9),
        "ratio_to_ceiling": sig(flops / dt / ceiling),
    }


@restores_threads
def benchmark_ensemble(
    cfg: RunConfig, members: int, backend: str = "vmap", dtype: str = "bf16", steps: int = 10, warmup: int = 3
) -> dict:
    """Member-steps/s of an ensemble of ``members`` copies of ``cfg`` (seeds 1…members) against one model
    alone, timed back to back in ``dtype``; ``backend`` as in :func:`modicl.ensemble.train_ensemble`.

    Returns:
        {'members', 'backend', 'dtype', 'device', 'single_compiled', 'ensemble_compiled' (what ran, after
         any compiler fallback), 'single_steps_per_s', 'ensemble_member_steps_per_s', 'ratio'}; ratio > 1 means the
         ensemble trains more member-steps per second than single runs.
    """
    from .steps import LoopStep, VmapStep
    from .training import RunState

    device, _ = setup_process(cfg.train)
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            RunState(dataclasses.replace(cfg, seed=s + 1), f"{tmp}/{s}", resume=False, device=device, dtype=tdtype)
            for s in range(members)
        ]

        def rate(stepper, rs) -> float:
            for _ in range(warmup):
                stepper([r.batch(0) for r in rs], cfg.train.lr)
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                losses = stepper([r.batch(0) for r in rs], cfg.train.lr)
            float(losses[-1])
            _sync(device)
            return steps / (time.perf_counter() - t)

        single_step = LoopStep(runs[:1])
        single = rate(single_step, runs[:1])
        ens_step = (VmapStep if backend == "vmap" else LoopStep)(runs)
        ens = rate(ens_step, runs) * members
    compiled = ens_step.compiled if isinstance(ens_step, VmapStep) else all(s.compiled for s in ens_step.steps)
    sig = lambda x: float(f"{x:.4g}")
    return {
        "members": members,
        "backend": backend,
        "dtype": dtype,
        "device": str(device),
        "single_compiled": single_step.steps[0].compiled,
        "ensemble_compiled": compiled,
        "single_steps_per_s": sig(single),
        "ensemble_member_steps_per_s": sig(ens),
        "ratio": sig(ens / single),
    }
