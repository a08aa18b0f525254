"""A dry run of benchmarks/gpu.sh on the CPU at toy sizes: every check runs to completion and records
real values, so the GPU's few minutes are not spent on a typo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modicl.bench import device_peak_flops

ROOT = Path(__file__).resolve().parents[1]


def test_peak_table_names_the_common_data_center_gpus():
    assert device_peak_flops("NVIDIA H100 80GB HBM3") == device_peak_flops("NVIDIA H200") == 989e12
    assert device_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and device_peak_flops("NVIDIA L4") == 121e12
    assert device_peak_flops("NVIDIA L40S") == 362e12 and device_peak_flops("cpu") is None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(out), "--device", "cpu", "--tiny", "--no-compile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _load(out, check):
    return json.loads((out / f"{check}.json").read_text())


def test_gpu_script_dry_run_completes_every_check(dry_run):
    status = (dry_run / "status.txt").read_text().split("\n")
    names = [line.split()[0] for line in status if line]
    assert names == ["versions", "single-d2", "single-d6", "quick-ensemble", "paper-ensemble", "resume"]
    assert all(" rc=0 " in line for line in status if line), status
    assert all(_load(dry_run, n)["complete"] for n in names)


def test_gpu_script_dry_run_records_real_measurements(dry_run):
    import torch

    v = _load(dry_run, "versions")
    assert v["torch"] == torch.__version__ and v["device_name"] == "cpu" and isinstance(v["flash_attention"], bool)
    for depth in (2, 6):
        s = _load(dry_run, f"single-d{depth}")
        assert s["config"]["n_layers"] == depth and s["eager"]["compile"] is False and s["compiled"]["compile"] is False
        assert (
            s["eager"]["gflop_per_step"] == pytest.approx(s["gflop_per_step"], rel=1e-3)
            and s["eager"]["steps_per_s"] > 0
        )
        assert s["eager"]["mfu"] is None  # no data-sheet peak for a CPU
        assert s["estimated_memory_gb"]["total"] > s["estimated_memory_gb"]["saved"] > 0
    e = _load(dry_run, "paper-ensemble")
    for k in (2, 4):
        m = e[f"members_{k}"]
        assert len(m["losses_alone"]) == len(m["losses_ensemble"]) == k
        assert 0 <= m["max_abs_loss_difference"] < 2e-3  # bf16 autocast, vmap vs alone
    q = _load(dry_run, "quick-ensemble")
    assert q["members_3"]["members"] == 3 and q["members_3"]["ratio"] > 0
    r = _load(dry_run, "resume")
    assert r["weights_bit_identical"] is True and r["final_metrics_identical"] is True
