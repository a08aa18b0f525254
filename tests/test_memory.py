"""The memory estimator against what autograd saves and against the peak memory of a real CPU step,
and the grouping of sweep points into ensembles that the estimate allows."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from modicl.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from modicl.memory import (
    CPU_MEMORY_BUDGET,
    ensemble_capacity,
    estimate_memory,
    measure_saved_bytes,
    memory_budget,
    overhead_bound,
)
from modicl.model import Transformer
from modicl.presets import preset


def _cfg(L=2, d=64, B=32, n_ctx=16, attention="auto", p=29):
    return RunConfig(
        task=TaskConfig(p=p, n_ctx=n_ctx, n_id=8),
        model=ModelConfig(d_model=d, n_layers=L, n_heads=4, attention=attention),
        train=TrainConfig(batch_size=B, threads=1),
    )


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 64, 32, 16), (2, 128, 32, 16), (2, 64, 64, 32), (4, 128, 16, 32)])
def test_estimated_saved_activations_match_what_autograd_saves_within_two_percent(attention, dtype, shape):
    cfg = _cfg(*shape, attention=attention)
    torch.manual_seed(0)
    model = Transformer(cfg.model, cfg.task.p, 3 * cfg.task.n_ctx)
    tokens = torch.randint(0, cfg.task.p, (cfg.train.batch_size, 3 * cfg.task.n_ctx))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else None
    measured = measure_saved_bytes(model, tokens, autocast, n_var=2)
    assert estimate_memory(cfg, dtype, "cpu").saved == pytest.approx(measured, rel=0.02)


_PEAK_SCRIPT = r"""
import json, sys, torch
from modicl.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from modicl.model import Transformer
from modicl.runtime import autocast_for
from modicl.steps import TrainStep, build_optimizer
d, L, B, dt = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
cfg = RunConfig(task=TaskConfig(p=29, n_ctx=32, n_id=8), model=ModelConfig(d_model=d, n_layers=L, n_heads=4),
                train=TrainConfig(batch_size=B, threads=1, device="cpu", compile="off"))
device = torch.device("cpu")
dtype = torch.bfloat16 if dt == "bf16" else torch.float32
model = Transformer(cfg.model, 29, 96)
step = TrainStep(model, build_optimizer(model, cfg.train, device), autocast_for(device, dtype), False, n_var=2)
tokens = torch.randint(0, 29, (B, 96))
step(tokens[:1])  # gradients and AdamW state exist from here on: the baseline

def status(key):  # kB in /proc/self/status
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak resident set size (VmHWM) to the current one
before = status("VmRSS")
step(tokens)
print(json.dumps({"step_peak": status("VmHWM") - before}))
"""


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_estimated_step_peak_brackets_the_measured_peak_rss_of_a_cpu_step(dtype):
    d, L, B = 128, 4, 256
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(d), str(L), str(B), dtype],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])["step_peak"]
    cfg = _cfg(L, d, B, 32)
    est = estimate_memory(cfg, torch.bfloat16 if dtype == "bf16" else torch.float32, "cpu")
    # saved activations alone stay below the measured peak; saved + working set is within −15 % / +30 %
    assert est.saved < measured
    assert 0.85 * measured < est.step_peak < 1.3 * measured


def _paper_at_depth(L: int) -> RunConfig:
    cfg = preset("paper")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_layers=L))


def test_paper_sizes_match_the_hand_count_and_are_not_overhead_bound():
    # hand count in bf16 under SDPA, B 1024, T 95, d 512, 32 query positions: a full layer saves 17 440 bytes
    # per token (1.70 GB), the last layer 6 152 per position and 11 288 per query (0.97 GB), ln_f and the
    # unembedding 0.10 GB, the bf16 weight copies 6 MB per layer: ≈ 2.78 GB at depth 2, ≈ 9.59 GB at depth 6
    for L, gb in ((2, 2.78), (6, 9.59)):
        est = estimate_memory(_paper_at_depth(L), torch.bfloat16, "cuda")
        assert est.saved / 1e9 == pytest.approx(gb, rel=0.02)
        assert est.state == 16 * sum(p.numel() for p in Transformer(_paper_at_depth(L).model, 29, 96).parameters())
        assert not overhead_bound(_paper_at_depth(L))
        assert ensemble_capacity(_paper_at_depth(L), 10**12) == 1
    assert overhead_bound(preset("quick")) and overhead_bound(preset("quick-depth2"))


def test_ensemble_capacity_is_capped_by_the_memory_budget():
    cfg = preset("quick")
    per_member = estimate_memory(cfg, torch.bfloat16, "cuda").total
    assert ensemble_capacity(cfg, 10 * per_member + 1) == 10
    assert ensemble_capacity(cfg, per_member // 2) == 1
    assert ensemble_capacity(cfg, 10**15) == 64 and ensemble_capacity(cfg, 10**15, max_members=16) == 16
    if not torch.cuda.is_available():
        assert memory_budget() == CPU_MEMORY_BUDGET == 20 * 2**30


def test_paper_sweep_trains_points_one_by_one_and_quick_sweep_groups_by_memory(tmp_path):
    from modicl.sweep import SweepSpec, expand, make_jobs

    paper = expand(SweepSpec("pd", preset="paper", axes={"task.n_id": [64, 128, 256], "seed": [1, 2]}))
    assert [len(j.points) for j in make_jobs(paper, tmp_path)] == [1] * 6
    quick = expand(SweepSpec("q", preset="quick", axes={"task.n_id": [8, 16, 32], "seed": [1, 2, 3]}))
    assert [len(j.points) for j in make_jobs(quick, tmp_path)] == [9]
    dtype = torch.bfloat16 if torch.cuda.is_available() else None
    per_member = estimate_memory(quick[0].config, dtype or _cpu_dtype(), "cuda" if dtype else "cpu").total
    jobs = make_jobs(quick, tmp_path, memory_budget=4 * per_member)
    assert [len(j.points) for j in jobs] == [4, 4, 1]
    assert [p.hash for j in jobs for p in j.points] == [p.hash for p in quick]  # grid order kept


def _cpu_dtype() -> torch.dtype:
    from modicl.runtime import resolve_dtype

    return resolve_dtype("auto", torch.device("cpu"))
