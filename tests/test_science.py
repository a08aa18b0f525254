"""Science checks that train for minutes. The demo preset's check runs in `make test` (CI); the others,
marked slow, with `make test-slow`.

Each asserts what several seeds showed (docs/quick-preset.md), with the seeds' record in a comment.
"""

import dataclasses
import json
import math

import pytest

from modicl.presets import preset
from modicl.training import train


def _fp32(cfg, seed):
    return dataclasses.replace(cfg, seed=seed, train=dataclasses.replace(cfg.train, dtype="fp32", threads=1))


def test_the_demo_preset_reaches_ood_generalization_in_one_of_six_seeds_on_two_cores(tmp_path):
    # `make demo`'s preset (quick-p11: p = 11, 32-shot contexts, fp32 on every CPU), seeds 1-6, two runs at
    # a time, each with cpu_count / 2 threads: one on two cores, the numeric path of the seed tables. What it
    # asserts holds by the measured seed rate (docs/quick-preset.md, "quick-p11 over seeds"): Table 1's
    # o.o.d. generalization at the last step in 22 of the 35 fp32 seed runs (Xeon, full-position last block:
    # 3/5 AMX kernels, 3/5 AVX2 kernels, 4/5 two threads; EPYC: 2/5 native, 4/5 AVX2 kernels; Xeon, query-only
    # block: 3/5 one thread, 3/5 two threads), 12 of 20 with the query-only last block of the code now; every
    # measured path had at least 2 of seeds 1-5 there. Which seeds get there moves with the numerics (a
    # gradient rounding of ≈ 1e-7 flips one), so the check asks for one of six: all six miss with
    # probability 0.37⁶ ≈ 0.3 % at the fp32 rate and 0.4⁶ ≈ 0.4 % at the query-only block's rate (five seeds:
    # 0.7 % and 1.0 %). Two runs at a time cost what the sixth seed adds. On the Xeon (AMX, one thread) seeds
    # 1-3 reach it and 4-6 do not.
    from modicl.sweep import SweepSpec, run_sweep

    spec = SweepSpec("ci-demo", preset="quick-p11", axes={"seed": [1, 2, 3, 4, 5, 6]})
    report = run_sweep(spec, tmp_path, progress=False, workers=2)
    assert not report.failed
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("runs/*/summary.json"))]
    assert len(summaries) == 6 and all(s["dtype"] == "float32" for s in summaries)
    generalized = [s for s in summaries if s["phase"] == "ood_generalization"]
    assert len(generalized) >= 1, [s["phase_pattern"] for s in summaries]
    # ≥ 0.5 on o.o.d. test is far above chance (1/p ≈ 0.09) and copying (0 on novel queries); it must also be
    # the paper's depth-2 algorithm or better: the RM-solvable o.o.d.-test queries answered, and the
    # fingerprint not "neither" (undecided: the few MR-only queries leave their interval open)
    fps = [s["final"]["ood_test"]["fingerprint"] for s in generalized]
    assert all(
        s["final"]["ood_test"]["algorithm"] in ("ratio_matching", "modular_regression", "undecided")
        and s["final"]["ood_test"]["fingerprint"]["rm"]["acc"] >= s["phase_threshold"]
        for s in generalized
    ), fps


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
