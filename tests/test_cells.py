import math

import pandas as pd
import pytest

from modicl.sweep.cells import fisher_exact, format_cells, mean_interval, seed_cells


def test_fisher_exact_matches_hand_computed_hypergeometric_tails():
    assert fisher_exact(5, 5, 0, 5) == pytest.approx(1 / 252)  # C(10,5) = 252 tables, one as extreme
    assert fisher_exact(1, 5, 0, 2) == pytest.approx(5 / 7)  # P(≥1 of the one success lands in the 5)
    assert fisher_exact(0, 3, 3, 3) == 1.0
    with pytest.raises(ValueError, match="0…n"):
        fisher_exact(6, 5, 0, 5)


def test_mean_interval_is_the_student_t_interval():
    m, lo, hi = mean_interval([0.5, 0.7, 0.6])
    half = 4.303 * 0.1 / math.sqrt(3)  # sd 0.1, t(0.975, 2) = 4.303
    assert (m, lo, hi) == pytest.approx((0.6, 0.6 - half, 0.6 + half))
    assert math.isnan(mean_interval([0.4])[1])


def test_seed_cells_count_each_seed_phase_and_never_classify_the_mean():
    df = pd.DataFrame(
        {
            "p": [7] * 4,
            "n_id": [8, 8, 32, 32],
            "alpha": [0.8] * 4,
            "n_layers": [2] * 4,
            "seed": [1, 2, 1, 2],
            "phase": ["id_memorization", "id_memorization", "ood_generalization", "ood_memorization"],
            "final.ood_test.acc_last_novel": [0.1, 0.2, 0.7, 0.3],
        }
    )
    cells = seed_cells(df)
    assert [c["cell"] for c in cells] == [{"n_id": 8}, {"n_id": 32}]
    assert cells[1]["phases"] == {"ood_memorization": 1, "ood_generalization": 1}
    assert cells[1]["seeds"] == {1: "ood_generalization", 2: "ood_memorization"}
    assert cells[1]["mean"] == pytest.approx(0.5)
    text = format_cells(cells)
    assert "n_id=32: ood_memorization 1/2, ood_generalization 1/2" in text and "n = 2 seeds" in text


def test_a_swept_data_seed_labels_each_run_by_the_seeds_that_vary():
    df = pd.DataFrame(
        {
            "p": [7, 7],
            "n_id": [32, 32],
            "alpha": [0.8, 0.8],
            "n_layers": [2, 2],
            "seed": [1, 1],
            "data_seed": [5, 6],
            "phase": ["none", "id_memorization"],
            "final.ood_test.acc_last_novel": [0.1, 0.2],
        }
    )
    (cell,) = seed_cells(df)
    assert cell["seeds"] == {"data_seed 5": "none", "data_seed 6": "id_memorization"}
    assert "    data_seed 6: id_memorization, 0.20" in format_cells([cell])


def test_plain_seeds_print_as_seed_n():
    df = pd.DataFrame(
        {"p": [7, 7], "seed": [1, 2], "phase": ["none", "none"], "final.ood_test.acc_last_novel": [0.1, 0.2]}
    )
    assert "    seed 2: none, 0.20" in format_cells(seed_cells(df))


def test_an_unlisted_seed_prints_with_its_pattern():
    df = pd.DataFrame(
        {
            "p": [7, 7],
            "seed": [1, 2],
            "phase": ["unlisted", "id_memorization"],
            "phase_pattern": ["✓✓✓✗", "✓✗✗✗"],
            "final.ood_test.acc_last_novel": [0.4952, 0.2],
        }
    )
    text = format_cells(seed_cells(df))
    assert "    seed 1: unlisted ✓✓✓✗, 0.50" in text and "    seed 2: id_memorization, 0.20" in text


def test_the_transient_table_compares_fixed_stretches_of_training_seed_by_seed():
    from modicl.sweep.cells import transient_markdown, window_mean

    def run(accs):  # evaluations at steps 0, 100, …, 400 of one seed
        return [
            {"step": 100 * i, "ood_train": {"acc_last_novel": a}, "ood_test": {"acc_last_novel": 0.2}}
            for i, a in enumerate(accs)
        ]

    a, b = run([0.1, 0.5, 0.6, 0.3, 0.2]), run([0.1, 0.4, 0.4, 0.2, 0.2])
    # middle (0.25, 0.5] of 400 steps holds step 200; end (0.75, 1] holds step 400
    assert window_mean(a, "ood_train", 0.25, 0.5) == 0.6 and window_mean(a, "ood_train", 0.75, 1.0) == 0.2
    assert window_mean(a, "ood_train", 0.0, 0.5) == (0.5 + 0.6) / 2  # steps 100 and 200: step 0 lies outside (0, …]
    table = transient_markdown({"depth 6": [a, b]})
    # end − middle: −0.4 and −0.2 → mean −0.30, sd 0.1414, t(0.975, 1) 12.706: ± 1.27
    assert "| depth 6 | 2 | 0.50 | 0.20 | -0.30 [-1.57, +0.97] | 0.20 | 0.20 | +0.00 [+0.00, +0.00] |" in table


def test_each_seed_prints_what_its_o_o_d_test_reads_as_and_cells_md_counts_the_labels():
    from modicl.sweep.cells import cells_markdown

    df = pd.DataFrame(
        {
            "p": [11] * 3,
            "n_id": [64] * 3,
            "alpha": [0.8] * 3,
            "n_layers": [2] * 3,
            "seed": [1, 2, 3],
            "phase": ["ood_generalization", "ood_generalization", "ood_memorization"],
            **{f"final.{s}.acc_last_novel": [0.9, 0.8, 0.3] for s in ("id_train", "id_test", "ood_train", "ood_test")},
            "final.ood_test.algorithm": ["ratio_matching", "ratio_matching", "neither"],
            "final.ood_test.fp_rm": [0.85, 0.75, 0.2],
            "final.ood_test.fp_mr_only": [0.1, 0.2, 0.1],
        }
    )
    text = format_cells(seed_cells(df))
    assert "seed 1: ood_generalization, 0.90; read as ratio matching (RM-solvable 0.85, MR-only 0.10)" in text
    assert "seed 3: ood_memorization, 0.30; read as neither (RM-solvable 0.20, MR-only 0.10)" in text
    md = cells_markdown(df)
    assert "o.o.d. test read as (seeds)" in md and "ratio matching 2, neither 1" in md
    assert "0.60 [" in md  # seed mean of the RM-solvable accuracy (0.85 + 0.75 + 0.2) / 3


def test_a_cell_whose_ratio_matching_ceiling_is_below_the_threshold_says_modular_regression_is_needed():
    df = pd.DataFrame(
        {
            "p": [7, 7],
            "n_id": [32, 32],
            "alpha": [0.8] * 2,
            "n_layers": [2] * 2,
            "seed": [1, 2],
            "phase": ["ood_memorization"] * 2,
            "final.ood_test.acc_last_novel": [0.3, 0.4],
            "final.ood_test.ratio_matching_last_novel": [0.33, 0.35],
        }
    )
    text = format_cells(seed_cells(df), threshold=0.5)
    assert "ratio matching answers only 0.34 of the novel o.o.d.-test queries here (< threshold 0.5)" in text
    assert "needs modular regression" not in format_cells(seed_cells(df), threshold=0.3)


def _fp_row(rm_acc, rm_n, mr_acc, mr_n):
    k = len(rm_n)
    return {
        "step": 100,
        "ood_test": {
            "fingerprint_kshot": {
                "rm": {"acc": rm_acc, "n": rm_n},
                "mr_only": {"acc": mr_acc, "n": mr_n},
                "neither": {"acc": [None] * k, "n": [0] * k},
            }
        },
    }


def test_band_accuracy_pools_the_queries_of_a_shot_band():
    from modicl.sweep.cells import band_accuracy

    fp = _fp_row([None, 1.0, 0.5, 0.25, 1.0], [0, 2, 4, 4, 2], [None, None, 0.0, 1.0, 0.5], [0, 0, 2, 1, 2])[
        "ood_test"
    ]["fingerprint_kshot"]
    # k 2–4: RM 2 + 1 + 2 = 5 right of 4 + 4 + 2 = 10; MR-only 0 + 1 + 1 = 2 of 5
    assert band_accuracy(fp, "rm", 2, 4) == 0.5
    assert band_accuracy(fp, "mr_only", 2, 4) == 0.4
    assert band_accuracy(fp, "mr_only", 0, 1) is None  # no MR-only query before two examples
    assert band_accuracy(fp, "rm", 3, 99) == 3 / 6  # the band is cut at the last position


def test_shift_markdown_gives_seed_means_per_band_with_t_intervals():
    from modicl.sweep.cells import shift_markdown

    n = [0, 0, 4, 4, 4, 4, 4, 4, 4, 4]
    a = _fp_row([None, None] + [1.0] * 8, n, [None, None] + [0.0] * 8, n)
    b = _fp_row([None, None] + [0.5] * 8, n, [None, None] + [0.5] * 8, n)
    table = shift_markdown({"depth 2": [[a], [b]], "depth 4": [[a]]}, "ood_test", bands=((2, 7), (8, 15)))
    lines = table.splitlines()
    assert lines[0] == "| group | class | k 2–7 | k 8–9 |"
    # two seeds at 1.0 and 0.5: mean 0.75, t_{0.975,1} = 12.706, sd 0.3536, half-width 12.706 · 0.25 = 3.18 (clipped to
    # [0, 1])
    assert lines[2] == "| depth 2 | RM-solvable | 0.75 [0.00, 1.00] (2) | 0.75 [0.00, 1.00] (2) |"
    assert lines[3] == "| depth 2 | MR-only | 0.25 [0.00, 1.00] (2) | 0.25 [0.00, 1.00] (2) |"
    assert lines[4] == "| depth 4 | RM-solvable | 1.00 (1) | 1.00 (1) |"  # one seed: no interval
    assert lines[5] == "| depth 4 | MR-only | 0.00 (1) | 0.00 (1) |"
