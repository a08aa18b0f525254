"""Science checks that train for minutes. The demo preset's check runs in `make test` (CI); the others,
marked slow, with `make test-slow`.

Each asserts what several seeds showed (docs/quick-preset.md), with the seeds' record in a comment.
"""

import dataclasses
import json
import math

import pytest

from modicl.presets import preset
from modicl.train import train


def _fp32(cfg, seed):
    return dataclasses.replace(cfg, seed=seed, train=dataclasses.replace(cfg.train, dtype="fp32", threads=1))


def test_the_demo_preset_learns_unseen_tasks_in_context_in_one_of_three_seeds_on_two_cores(tmp_path):
    # `make demo`'s preset (quick-p11: p = 11, 32-shot contexts, fp32 on every CPU), seeds 1-3, three
    # processes on the two cores (cpu_count / 3 threads each: one here). What it asserts is what holds on
    # every numeric path measured (docs/quick-preset.md, "quick-p11 over seeds"): at least one seed leaves
    # the loss plateau and solves unseen tasks in context on the training inputs (o.o.d. train ✓, Table 1's
    # o.o.d. memorization or o.o.d. generalization). Per seed that held in 4/5 (AMX kernels, one thread),
    # 4/5 (AVX2 kernels), 5/5 (two threads), 4/5 (bf16) on an Intel Xeon with AMX and in 4/5 (native
    # kernels), 4/5 (AVX2 kernels), 5/5 (bf16) on an AMD EPYC with avx512_bf16 (one thread): 30 of 35 runs,
    # so all three seeds miss with probability ≈ (5/35)³ ≈ 0.3 % at the pooled rate (≈ 2.5 % at its Wilson
    # lower bound 0.71). o.o.d. generalization itself is not seed-robust: 21 of 35 runs, 2/5 to 4/5 by path, and
    # which seeds reach it moves with the numeric path (seed 1
    # on the EPYC reaches it or not as the last block's gradients round one way or the other, ≈ 1e-7
    # relative), so it cannot be asserted at < 1 % failure until a seed-robust preset exists. Where a seed
    # does reach it, the fingerprint must read the paper's depth-2 algorithm or better.
    from modicl.sweep import SweepSpec, run_sweep

    report = run_sweep(SweepSpec("ci-demo", preset="quick-p11", axes={"seed": [1, 2, 3]}), tmp_path, progress=False, workers=3)
    assert not report.failed
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("runs/*/summary.json"))]
    assert len(summaries) == 3 and all(s["dtype"] == "float32" for s in summaries)
    in_context = [s for s in summaries if s["final"]["ood_train"]["acc_last_novel"] >= s["phase_threshold"]]
    assert len(in_context) >= 1, [s["phase_pattern"] for s in summaries]
    # chance is 1/p ≈ 0.09 and copying scores 0 on novel queries, so ≥ 0.5 is far above both nulls
    assert all(s["final"]["ood_train"]["acc_last_novel"] > 4 / preset("quick-p11").task.p for s in in_context)
    # where o.o.d. test passes too, it is the paper's depth-2 algorithm or better: the RM-solvable o.o.d.-test
    # queries are answered and the fingerprint does not read "neither" (undecided: the few MR-only queries
    # leave their interval open)
    generalized = [s for s in summaries if s["phase"] == "ood_generalization"]
    fps = [s["final"]["ood_test"]["fingerprint"] for s in generalized]
    assert all(s["final"]["ood_test"]["algorithm"] in ("ratio_matching", "modular_regression", "undecided")
               and s["final"]["ood_test"]["fingerprint"]["rm"]["acc"] >= s["phase_threshold"] for s in generalized), fps


@pytest.mark.slow
def test_role_embedding_leaves_the_plateau_and_memorizes_where_plain_rope_does_not(tmp_path):
    # quick-role against quick-depth2 cut to 4 000 steps: seeds 1-4 in bf16 gave i.d. memorization 4/4
    # (i.d.-train loss 0.56-1.02 at step 4 000) against none 4/4 (loss 1.58-1.67); seeds 1-2 in fp32 as well.
    cfg = _fp32(preset("quick-role"), seed=1)
    role = train(cfg, tmp_path / "role", progress=False)
    plain_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, role_embedding=False))
    plain = train(plain_cfg, tmp_path / "plain", progress=False)
    ln_p = math.log(cfg.task.p)
    assert role["final"]["id_train"]["loss"] < 0.6 * ln_p < plain["final"]["id_train"]["loss"]
    assert role["final"]["id_train"]["acc_last_novel"] >= 0.6 and role["phase"] == "id_memorization"
    assert plain["phase"] == "none"


@pytest.mark.slow
def test_quick_memorize_preset_memorises_without_ood_skill(tmp_path):
    summary = train(preset("quick-memorize"), tmp_path / "mem", progress=False)
    final = summary["final"]
    assert final["id_train"]["acc_last_novel"] >= 0.8
    assert final["ood_train"]["acc_last_novel"] < 0.3 and summary["phase"] in ("id_memorization", "id_generalization")
