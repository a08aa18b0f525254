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


def test_the_demo_preset_reaches_ood_generalization_in_one_of_three_seeds_on_two_cores(tmp_path):
    # `make demo`'s preset (quick-p11: p = 11, 32-shot contexts, fp32 on every CPU), seeds 1-3, three
    # processes on the two cores (cpu_count / 3 threads each: one here). Measured (docs/quick-preset.md,
    # "quick-p11 over seeds"), Intel Xeon with AMX: with one thread seeds 1, 2 and 5 reach o.o.d.
    # generalization and seeds 3 and 4 do not, alike with the AMX and the AVX2 kernels; with two threads 4 of
    # 5 (seed 4 turns into a success), in bf16 (not run here) 2 of 5. The generalizing runs read as ratio
    # matching (RM-solvable o.o.d.-test queries 0.70-1.00 answered, MR-only 0.08-0.32). On the two measured
    # one-thread paths this check passes deterministically (seeds 1 and 2). On numerics not measured, outcomes
    # can move (two threads and bf16 moved them), so treat the seeds as independent draws at the one-thread
    # rate, 3 of 5 (Wilson [0.23, 0.88]): all three miss with probability 0.4³ ≈ 6 % at the point estimate,
    # above the 1 % this check should have. Raising the preset's per-seed rate (≥ 0.8 would give 0.2³ < 1 %)
    # is open work, and this check tightens with it.
    from modicl.sweep import SweepSpec, run_sweep

    report = run_sweep(SweepSpec("ci-demo", preset="quick-p11", axes={"seed": [1, 2, 3]}), tmp_path, progress=False, workers=3)
    assert not report.failed
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("runs/*/summary.json"))]
    assert len(summaries) == 3 and all(s["dtype"] == "float32" for s in summaries)
    generalized = [s for s in summaries if s["phase"] == "ood_generalization"]
    assert len(generalized) >= 1, [s["phase_pattern"] for s in summaries]
    # and it is the paper's depth-2 algorithm or better: the RM-solvable o.o.d.-test queries are answered and
    # the fingerprint does not read "neither" (undecided: the few MR-only queries leave their interval open)
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
