"""The checks of ``benchmarks/gpu.sh``, one per call, each writing ``OUT/CHECK.json`` (rewritten after
every measurement, so a check stopped by its time limit keeps what it measured).

    python benchmarks/gpu_checks.py CHECK --out DIR [--device cuda] [--tiny] [--no-compile]

Checks:
  versions        torch, CUDA, device name, memory, dense bf16 peak, whether flash attention runs
  single-d2/-d6   the paper config (p 29, d_model 512, bs 1024, n_ctx 32, bf16) at depth 2 / 6: eager and
                  compiled step time, MFU against the device's bf16 peak, peak memory against the estimate
  paper-ensemble  2- and 4-member vmap ensembles of the paper config at depth 2 against the same members
                  trained alone: losses step by step, memory per member
  quick-ensemble  16- and 64-member vmap ensembles of the quick architecture against one compiled model
  resume          a run stopped at its first checkpoint and resumed on the same device ends bit-identical

``--device cpu --tiny`` runs every check at toy sizes on a CPU (the test suite does, so the GPU's minutes
are not spent on a typo); ``--no-compile`` skips compilation (the compiled rows then say compile false).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from modicl.bench import benchmark, benchmark_ensemble, device_peak_flops
from modicl.config import RunConfig
from modicl.memory import estimate_memory
from modicl.model import train_flops_per_step
from modicl.presets import preset

CHECKS = ("versions", "single-d2", "single-d6", "paper-ensemble", "quick-ensemble", "resume")


class Record:
    """The check's results, written to OUT/CHECK.json after every update."""

    def __init__(self, out: Path, check: str):
        self.path, self.data = out / f"{check}.json", {"check": check, "complete": False}
        self.write()

    def __setitem__(self, key, value) -> None:
        self.data[key] = value
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def with_train(cfg: RunConfig, **kw) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **kw))


def paper(args, depth: int) -> RunConfig:
    """The paper config at ``depth`` (toy sizes with --tiny), on ``args.device``."""
    cfg = preset("paper")
    if args.tiny:
        cfg = dataclasses.replace(
            cfg,
            task=dataclasses.replace(cfg.task, p=7, n_id=8, n_ctx=8),
            model=dataclasses.replace(cfg.model, d_model=32, n_heads=2),
        )
        cfg = with_train(cfg, batch_size=16)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_layers=depth))
    return with_train(cfg, device=args.device, dtype="bf16", threads=2 if args.device == "cpu" else 0)


def quick(args) -> RunConfig:
    cfg = with_train(preset("quick"), device=args.device, dtype="bf16", threads=2 if args.device == "cpu" else 0)
    if args.tiny:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=32, n_layers=2, n_heads=2))
        cfg = with_train(cfg, batch_size=32)  # a multiple of the quick preset's n_id 32
    return cfg


def compile_setting(args) -> str:
    return "off" if args.no_compile else "on"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_versions(args, rec: Record) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rec["torch"] = torch.__version__
    rec["cuda"] = torch.version.cuda
    rec["cuda_available"] = torch.cuda.is_available()
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        rec["device_name"], rec["memory_gb"] = props.name, round(props.total_memory / 1e9, 1)
        rec["capability"] = f"{props.major}.{props.minor}"
        rec["peak_bf16_tflops"] = (device_peak_flops(props.name) or 0) / 1e12 or None
        rec["cudnn"] = torch.backends.cudnn.version()
    else:
        rec["device_name"], rec["peak_bf16_tflops"] = "cpu", None
    # flash attention at the paper's shapes (head dim 128, T 95, causal, bf16): forward and backward
    B, H, T, D = (8, 4, 95, 128) if not args.tiny else (2, 2, 23, 16)
    q, k, v = (torch.randn(B, H, T, D, device=args.device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        rec["flash_attention"] = True
    except RuntimeError as e:
        rec["flash_attention"], rec["flash_attention_error"] = False, str(e)[:300]


def check_single(args, rec: Record, depth: int) -> None:
    cfg = paper(args, depth)
    steps = 3 if args.tiny else 10
    peak = device_peak_flops(torch.cuda.get_device_name(0)) if args.device.startswith("cuda") else None
    est = estimate_memory(cfg, torch.bfloat16, args.device)
    rec["config"] = {
        "p": cfg.task.p,
        "d_model": cfg.model.d_model,
        "n_layers": depth,
        "batch_size": cfg.train.batch_size,
        "n_ctx": cfg.task.n_ctx,
    }
    rec["gflop_per_step"] = train_flops_per_step(cfg) / 1e9
    rec["estimated_memory_gb"] = {"state": est.state / 1e9, "saved": est.saved / 1e9, "total": est.total / 1e9}
    for name, setting in (("eager", "off"), ("compiled", compile_setting(args))):
        r = benchmark(with_train(cfg, compile=setting), "bf16", steps=steps, warmup=2)
        r["mfu"] = r["gflop_per_s"] * 1e9 / peak if peak else None  # against the data-sheet peak, not a matmul
        r["step_ms"] = 1e3 / r["steps_per_s"]
        rec[name] = r
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _losses(stepper, runs, steps: int) -> list[list[float]]:
    return [stepper([r.batch(0) for r in runs], runs[0].cfg.train.lr).tolist() for _ in range(steps)]


def check_paper_ensemble(args, rec: Record) -> None:
    from modicl.steps import LoopStep, VmapStep
    from modicl.training import RunState

    cfg = with_train(paper(args, 2), compile="off")  # compute-bound: eager suffices to compare, and saves compiling
    cuda = args.device.startswith("cuda")
    device, steps = torch.device(args.device), 3
    est = estimate_memory(cfg, torch.bfloat16, args.device)
    rec["estimated_gb_per_member"] = est.total / 1e9
    for k in (2, 4):
        with tempfile.TemporaryDirectory() as tmp:

            def open_runs(tag):
                return [
                    RunState(
                        dataclasses.replace(cfg, seed=s + 1),
                        f"{tmp}/{tag}{s}",
                        resume=False,
                        device=device,
                        dtype=torch.bfloat16,
                    )
                    for s in range(k)
                ]

            alone = []
            for r in open_runs("alone"):  # each member alone, one at a time
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                alone.append([row[0] for row in _losses(LoopStep([r]), [r], steps)])
                single_peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
                r.close()
            runs = open_runs("ens")
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 1e9 if cuda else None
            t = time.perf_counter()
            ens = _losses(VmapStep(runs), runs, steps)
            sync(args.device)
            dt = time.perf_counter() - t
            ens_peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
            for r in runs:
                r.close()
        diff = max(abs(a - b) for m in range(k) for a, b in zip(alone[m], [row[m] for row in ens]))
        rec[f"members_{k}"] = {
            "losses_alone": alone,
            "losses_ensemble": [[row[m] for row in ens] for m in range(k)],
            "max_abs_loss_difference": diff,
            "ensemble_s_per_step": dt / steps,
            "single_peak_gb": single_peak,
            "ensemble_peak_gb": ens_peak,
            "ensemble_gb_per_member": (ens_peak - base) / k if cuda else None,
        }


def check_quick_ensemble(args, rec: Record) -> None:
    cfg = with_train(quick(args), compile=compile_setting(args))
    for k in (2, 3) if args.tiny else (16, 64):
        rec[f"members_{k}"] = benchmark_ensemble(cfg, k, "vmap", dtype="bf16", steps=3 if args.tiny else 20, warmup=2)


def check_resume(args, rec: Record) -> None:
    from safetensors.torch import load_file

    from modicl.training import train

    steps = 20 if args.tiny else 40
    cfg = with_train(
        quick(args), steps=steps, eval_every=steps // 2, eval_sequences=64, compile="off" if args.no_compile else "auto"
    )
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, f"{tmp}/whole", progress=False)
        assert train(cfg, f"{tmp}/split", progress=False, stop_after=steps // 2) is None
        train(cfg, f"{tmp}/split", resume=True, progress=False)
        a = load_file(f"{tmp}/whole/checkpoints/last.safetensors")
        b = load_file(f"{tmp}/split/checkpoints/last.safetensors")
        rows = [Path(f"{tmp}/{d}/metrics.jsonl").read_text().splitlines()[-1] for d in ("whole", "split")]
    rec["weights_bit_identical"] = sorted(a) == sorted(b) and all(torch.equal(a[n], b[n]) for n in a)
    strip = lambda row: {k: v for k, v in json.loads(row).items() if k != "wall_s"}
    rec["final_metrics_identical"] = strip(rows[0]) == strip(rows[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("check", choices=CHECKS)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (a dry run of the logic)")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        torch.set_num_threads(2)
    rec = Record(args.out, args.check)
    t = time.perf_counter()
    run = {
        "versions": check_versions,
        "single-d2": lambda a, r: check_single(a, r, 2),
        "single-d6": lambda a, r: check_single(a, r, 6),
        "paper-ensemble": check_paper_ensemble,
        "quick-ensemble": check_quick_ensemble,
        "resume": check_resume,
    }[args.check]
    run(args, rec)
    rec["wall_s"] = round(time.perf_counter() - t, 1)
    rec["complete"] = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
