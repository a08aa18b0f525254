import pytest
from conftest import tiny_config

from modicl.bench import benchmark
from modicl.model import train_flops_per_step
from modicl.presets import preset


def test_flops_of_the_reference_config_are_counted_by_hand():
    cfg = preset("bench")  # p 29, d 128, 2 layers, bs 128, n_ctx 32 → T = 95
    d, B, T, V = 128, 128, 95, 29  # two layers: the first (every position) and the last (query-only)
    queries = [1 + 3 * i for i in range(32)]  # the y tokens, whose logits predict z
    first = B * T * 24 * d * d + B * 4 * d * sum(range(1, T + 1))  # qkv 6d², out 2d², mlp 16d²; causal QKᵀ, AV
    last = B * T * 4 * d * d + B * 32 * 20 * d * d + B * 4 * d * sum(t + 1 for t in queries)  # k, v; q, out, mlp
    unembed = B * 32 * 2 * d * V
    assert train_flops_per_step(cfg) == pytest.approx(3 * (first + last + unembed), rel=1e-12)
    # every position everywhere would be 30.75 GFLOP per step (the 31.0); the query-only last layer saves 28 %
    assert train_flops_per_step(cfg) == pytest.approx(22.05e9, rel=0.001)


def test_benchmark_reports_consistent_rates():
    cfg = tiny_config()
    r = benchmark(cfg, dtype="fp32", steps=3, warmup=1)
    tokens_per_step = 16 * (3 * 4 - 1)  # bs 16, n_ctx 4 → 11 input tokens per sequence
    assert r["tokens_per_s"] == pytest.approx(tokens_per_step * r["steps_per_s"], rel=2e-3)
    assert r["gflop_per_s"] == pytest.approx(r["gflop_per_step"] * r["steps_per_s"], rel=2e-3)
    assert r["ratio_to_ceiling"] == pytest.approx(r["gflop_per_s"] / r["ceiling_gflop_per_s"], rel=2e-3)
