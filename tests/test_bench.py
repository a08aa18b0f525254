import pytest
from modicl.bench import benchmark, train_flops_per_step
from modicl.presets import preset

from conftest import tiny_config


def test_flops_of_the_reference_config_are_counted_by_hand():
    cfg = preset("bench")  # p 29, d 128, 2 layers, bs 128, n_ctx 32 → T = 95
    d, L, B, T, V = 128, 2, 128, 95, 29
    linear = B * T * L * 24 * d * d  # qkv 6d², out 2d², mlp 16d² per token and layer
    unembed = B * T * 2 * d * V
    attention = B * L * 4 * d * sum(range(1, T + 1))  # causal QKᵀ and AV
    assert train_flops_per_step(cfg) == 3 * (linear + unembed + attention)
    assert 30e9 < train_flops_per_step(cfg) < 32e9  # the 31.0 GFLOP per step


def test_benchmark_reports_consistent_rates():
    cfg = tiny_config()
    r = benchmark(cfg, dtype="fp32", steps=3, warmup=1)
    tokens_per_step = 16 * (3 * 4 - 1)  # bs 16, n_ctx 4 → 11 input tokens per sequence
    assert r["tokens_per_s"] == pytest.approx(tokens_per_step * r["steps_per_s"], rel=2e-3)
    assert r["gflop_per_s"] == pytest.approx(r["gflop_per_step"] * r["steps_per_s"], rel=2e-3)
    assert r["ratio_to_ceiling"] == pytest.approx(r["gflop_per_s"] / r["ceiling_gflop_per_s"], rel=2e-3)
