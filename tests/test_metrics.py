import itertools

import pytest
import torch

from modicl.algorithms import modular_regression, ratio_matching
from modicl.data import sample_sequences
from modicl.metrics import Counts, clustered_interval, evaluate, query_structure, wilson_interval
from modicl.phases import classify_phase, pattern_text


class Oracle(torch.nn.Module):
    """Predicts the true next token at the chosen positions and a wrong one elsewhere."""

    def __init__(self, p, right_at_z: bool, right_elsewhere: bool, full: torch.Tensor):
        super().__init__()
        self.p, self.full, self.right_at_z, self.right_elsewhere = p, full, right_at_z, right_elsewhere

    def forward(self, inputs, positions=slice(None)):  # the model protocol: logits at ``positions``
        rows = [int((self.full[:, :-1] == r).all(1).nonzero()[0]) for r in inputs]
        nxt = self.full[rows, 1:]  # the true next token at every position
        T = inputs.shape[1]
        y_pos = torch.zeros(T, dtype=torch.bool)
        y_pos[1::3] = True
        right = torch.where(y_pos, torch.tensor(self.right_at_z), torch.tensor(self.right_elsewhere))
        pred = torch.where(right, nxt, (nxt + 1) % self.p)
        return (torch.nn.functional.one_hot(pred, self.p).float() * 10)[:, positions]


def _run(right_at_z, right_elsewhere):
    p = 7
    tasks, pairs = torch.tensor([[1, 2], [3, 5]]), torch.tensor([(x, y) for x in range(p) for y in range(p)])
    g = torch.Generator()
    g.manual_seed(0)
    full = sample_sequences(tasks, pairs, 8, 5, p, g, shared_inputs=False)
    g.manual_seed(0)
    model = Oracle(p, right_at_z, right_elsewhere, full)
    return evaluate(model, {"s": (tasks, pairs)}, n_ctx=5, p=p, sequences=16, batch_size=5, generator=g)["s"]


def test_accuracy_of_fabricated_logits_counts_only_z_positions():
    right_only_at_z = _run(True, False)
    assert (
        right_only_at_z["acc"] == 1.0 and right_only_at_z["acc_last"] == 1.0 and right_only_at_z["kshot"] == [1.0] * 5
    )
    wrong_only_at_z = _run(False, True)
    assert wrong_only_at_z["acc"] == 0.0 and wrong_only_at_z["acc_last"] == 0.0
    assert right_only_at_z["n_sequences"] == 16


def test_counts_stay_exact_past_256_under_bf16():
    n, n_ctx, V = 1000, 3, 5
    targets = torch.randint(0, V, (n, n_ctx))
    logits = torch.nn.functional.one_hot(targets, V).to(torch.bfloat16)
    logits[:3, -1] = torch.nn.functional.one_hot((targets[:3, -1] + 1) % V, V).to(torch.bfloat16)  # 3 wrong
    c = Counts(n_ctx, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c.add(logits, targets)
        c.add(logits, targets)
    r = c.result()
    assert c.correct.tolist() == [2000, 2000, 1994]
    assert r["acc_last"] == 1994 / 2000 and r["acc"] == 5994 / 6000 and r["n_sequences"] == 2000


def _m(idtr, idte, oodtr, oodte):
    return {
        s: {"acc_last_novel": v}
        for s, v in zip(("id_train", "id_test", "ood_train", "ood_test"), (idtr, idte, oodtr, oodte))
    }


def test_phase_labels_follow_table_1():
    assert classify_phase(_m(1.0, 0.2, 0.1, 0.1)) == "id_memorization"
    assert classify_phase(_m(0.9, 0.8, 0.2, 0.1)) == "id_generalization"
    assert classify_phase(_m(0.9, 0.3, 0.7, 0.2)) == "ood_memorization"
    assert classify_phase(_m(0.9, 0.8, 0.8, 0.6)) == "ood_generalization"
    assert classify_phase(_m(0.2, 0.1, 0.1, 0.1)) == "none"
    # ✓✓✓✗ is not o.o.d. memorization (which needs i.d. test ✗): it is a pattern Table 1 does not list
    assert classify_phase(_m(0.9, 0.8, 0.8, 0.6), threshold=0.7) == "unlisted"
    assert pattern_text(_m(0.9, 0.8, 0.8, 0.6), threshold=0.7) == "✓✓✓✗"


def test_every_one_of_the_16_patterns_is_named_by_table_1_or_unlisted():
    table = {
        (1, 0, 0, 0): "id_memorization",
        (1, 1, 0, 0): "id_generalization",
        (1, 0, 1, 0): "ood_memorization",
        (1, 1, 1, 1): "ood_generalization",
        (0, 0, 0, 0): "none",
    }
    for bits in itertools.product((0, 1), repeat=4):
        got = classify_phase(_m(*(0.9 if b else 0.1 for b in bits)))
        assert got == table.get(bits, "unlisted"), bits


def test_phase_uses_novel_query_accuracy_not_all_queries():
    m = {s: {"acc_last": 0.82, "acc_last_novel": 0.82} for s in ("id_train", "id_test", "ood_train")}
    m["ood_test"] = {"acc_last": 0.82, "acc_last_novel": 0.1}  # a copier: right on repeats only
    assert classify_phase(m) == "unlisted"
    assert classify_phase(m, key="acc_last") == "ood_generalization"


def test_wilson_interval_matches_textbook_values():
    # Wilson (1927) 95 % intervals, e.g. Brown, Cai & DasGupta (2001): 0/10 → [0, 0.2775], 5/10 → [0.2366, 0.7634]
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_clustered_interval_equals_wilson_for_independent_single_predictions():
    # one prediction per sequence: the ratio estimator's variance is the binomial one times n/(n-1)
    k, n = 30, 100
    lo, hi = clustered_interval(k, k, k, n, n, n)
    wlo, whi = wilson_interval(k * (n - 1) / n, n - 1)
    assert lo == pytest.approx(wlo, abs=2e-3) and hi == pytest.approx(whi, abs=2e-3)
    # perfectly correlated within sequences (all right or all wrong, 10 predictions each): as wide as 100 draws
    lo, hi = clustered_interval(30 * 10, 30 * 100, 30 * 100, n * 10, n * 100, n)
    wlo, whi = wilson_interval(30, 100)
    assert hi - lo == pytest.approx(whi - wlo, rel=0.02)


def _seq(ab, xys, p):
    a, b = ab
    return [v for x, y in xys for v in (x, y, (a * x + b * y) % p)]


def test_novel_queries_exclude_exactly_the_repeated_inputs_of_a_hand_built_sequence():
    p = 7
    xys = [(1, 2), (3, 4), (1, 2), (2, 4), (3, 4), (0, 0), (0, 0), (5, 1)]
    tok = torch.tensor([_seq((2, 3), xys, p)])
    st = query_structure(tok, p, n_var=2)
    assert st["novel"][0].tolist() == [True, True, False, True, False, True, False, True]
    assert st["copy"][0].tolist() == [False, False, True, False, True, False, True, False]
    # ratio matching: (2, 4) = 2·(1, 2) at k = 3; the origin always; (5, 1) on no earlier line
    assert st["ratio_matching"][0].tolist() == [False, False, True, True, True, True, True, False]
    # modular regression: (1, 2) and (3, 4) are independent (det = 4 − 6 ≠ 0 mod 7), so from k = 2 on
    assert st["modular_regression"][0].tolist() == [False, False, True, True, True, True, True, True]


def test_null_models_match_the_brute_force_predictors_at_every_position():
    p, g = 5, torch.Generator().manual_seed(3)
    pairs = torch.tensor([(x, y) for x in range(p) for y in range(p)])
    tasks = torch.tensor([[1, 2], [0, 3], [4, 4], [2, 0]])
    tok = sample_sequences(tasks, pairs[:9], 16, 7, p, g, shared_inputs=False)
    st = query_structure(tok, p, n_var=2)
    xy, z = tok.view(-1, 7, 3)[..., :2], tok.view(-1, 7, 3)[..., 2]
    for k in range(1, 7):
        rm = ratio_matching(xy[:, :k], z[:, :k], xy[:, k], p) == z[:, k]
        mr = modular_regression(xy[:, :k], z[:, :k], xy[:, k], p) == z[:, k]
        repeat = (xy[:, :k] == xy[:, k : k + 1]).all(-1).any(-1)
        assert torch.equal(st["ratio_matching"][:, k], rm), k
        assert torch.equal(st["modular_regression"][:, k], mr), k
        assert torch.equal(st["copy"][:, k], repeat) and torch.equal(st["novel"][:, k], ~repeat), k


def test_novel_accuracy_counts_only_novel_queries():
    n_ctx, V = 4, 5
    targets = torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4]])
    logits = torch.nn.functional.one_hot(targets, V).float()
    logits[1, 3] = torch.nn.functional.one_hot(torch.tensor(0), V).float()  # wrong on the last query of row 1
    novel = torch.tensor([[True, True, False, True], [True, False, True, True]])
    zero = torch.zeros_like(novel)
    c = Counts(n_ctx, torch.device("cpu"))
    c.add(logits, targets, {"novel": novel, "copy": ~novel, "ratio_matching": zero, "modular_regression": zero})
    r = c.result()
    assert r["acc_last"] == 0.5 and r["acc_last_novel"] == 0.5 and r["n_novel_last"] == 2
    assert r["acc_novel"] == 5 / 6 and r["n_novel"] == 6 and r["repeat_frac"] == 2 / 8
    assert r["kshot_novel"] == [1.0, 1.0, 1.0, 0.5]
    assert r["baselines"]["copy"]["acc"] == 2 / 8 and r["baselines"]["copy"]["acc_last_novel"] == 0.0


def test_evaluation_draws_inputs_independently_for_every_task():
    p = 11
    tasks, pairs = torch.tensor([[1, 2], [3, 5], [2, 7]]), torch.tensor([(x, y) for x in range(p) for y in range(p)])
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, inputs, positions=slice(None)):
            seen.append(inputs.clone())
            return torch.zeros(*inputs.shape, p)[:, positions]

    evaluate(
        Spy(),
        {"s": (tasks, pairs)},
        n_ctx=8,
        p=p,
        sequences=30,
        batch_size=100,
        generator=torch.Generator().manual_seed(0),
    )
    xy = torch.cat(seen).view(3, 10, -1)[..., :-2].reshape(3, 10, 7, 3)[..., :2]  # [task, seq, example, (x, y)]
    assert not torch.equal(xy[0], xy[1]) and not torch.equal(xy[1], xy[2])
    distinct_streams = {tuple(s.flatten().tolist()) for s in xy.reshape(30, -1)}
    assert len(distinct_streams) == 30


def _reference_result(algorithm, p=7, n_ctx=6):
    """Counts of a 'model' that runs a reference algorithm on the examples before each query and answers
    a certainly wrong z (the true one plus 1) where the algorithm makes no prediction."""
    tasks = torch.tensor([[1, 2], [3, 5], [2, 6], [4, 1]])
    pairs = torch.tensor([(x, y) for x in range(p) for y in range(p)])
    tok = sample_sequences(tasks, pairs, 50, n_ctx, p, torch.Generator().manual_seed(0), shared_inputs=False)
    xy, z = tok.view(-1, n_ctx, 3)[..., :2], tok.view(-1, n_ctx, 3)[..., 2]
    logits = torch.zeros(*z.shape, p)
    for k in range(n_ctx):
        pred = algorithm(xy[:, :k], z[:, :k], xy[:, k], p)
        answer = torch.where(pred >= 0, pred, (z[:, k] + 1) % p)
        logits[torch.arange(len(z)), k, answer] = 1.0
    st = query_structure(tok, p, n_var=2)
    c = Counts(n_ctx, torch.device("cpu"))
    c.add(logits, z, st)
    return c.result(), st


def test_a_ratio_matcher_answers_exactly_the_rm_solvable_class_and_reads_as_ratio_matching():
    from modicl.phases import read_algorithm

    r, st = _reference_result(ratio_matching)
    fp = r["fingerprint"]
    assert fp["rm"]["acc"] == 1.0 and fp["mr_only"]["acc"] == 0.0 and fp["mr_only"]["n"] > 0
    assert fp["rm"]["n"] + fp["mr_only"]["n"] + fp["neither"]["n"] == r["n_novel_last"]
    # ratio matching's own novel-query accuracy is the RM-solvable share: the ceiling a ratio matcher meets
    assert fp["rm"]["share"] == pytest.approx(r["baselines"]["ratio_matching"]["acc_last_novel"])
    assert fp["rm"]["share"] + fp["mr_only"]["share"] + fp["neither"]["share"] == pytest.approx(1.0)
    assert read_algorithm(fp) == "ratio_matching"
    # per k: the classes partition the novel queries, and the ratio matcher is right on RM-solvable ones alone
    ks = r["fingerprint_kshot"]
    assert [sum(ks[c]["n"][k] for c in ks) for k in range(6)] == st["novel"].sum(0).tolist()
    assert all(a == 1.0 for a in ks["rm"]["acc"] if a is not None)
    assert all(a == 0.0 for c in ("mr_only", "neither") for a in ks[c]["acc"] if a is not None)


def test_a_modular_regressor_answers_the_mr_only_class_and_reads_as_modular_regression():
    from modicl.phases import read_algorithm

    fp = _reference_result(modular_regression)[0]["fingerprint"]
    assert fp["rm"]["acc"] == 1.0 and fp["mr_only"]["acc"] == 1.0 and fp["mr_only"]["n"] > 0
    assert read_algorithm(fp) == "modular_regression"


def test_fingerprint_classes_of_a_hand_built_sequence():
    p = 7
    # k: 0 (1,2) neither; 1 (2,4) = 2·(1,2) RM; 2 (3,4) neither (one line so far); 3 (5,1) MR-only;
    # 4 (1,2) a repeat (not novel); 5 (2,1) MR-only (on none of the lines of (1,2), (3,4), (5,1))
    xys = [(1, 2), (2, 4), (3, 4), (5, 1), (1, 2), (2, 1)]
    tok = torch.tensor([_seq((2, 3), xys, p)])
    st = query_structure(tok, p, n_var=2)
    targets = tok.view(1, -1, 3)[..., 2]
    logits = torch.nn.functional.one_hot(targets, p).float()
    logits[0, 3] = torch.nn.functional.one_hot((targets[0, 3] + 1) % p, p).float()  # wrong on the first MR-only
    c = Counts(6, torch.device("cpu"))
    c.add(logits, targets, st)
    ks = c.result()["fingerprint_kshot"]
    assert ks["rm"]["n"] == [0, 1, 0, 0, 0, 0]
    assert ks["mr_only"]["n"] == [0, 0, 0, 1, 0, 1] and ks["mr_only"]["acc"] == [None, None, None, 0.0, None, 1.0]
    assert ks["neither"]["n"] == [1, 0, 1, 0, 0, 0]
    last = c.result()["fingerprint"]
    assert last["mr_only"] == {"acc": 1.0, "acc_ci": list(wilson_interval(1, 1)), "n": 1, "share": 1.0}


@pytest.mark.parametrize(
    "rm, mr, label",
    [
        ((0.9, 0.95, 200), (0.05, 0.15, 100), "ratio_matching"),
        ((0.9, 0.95, 200), (0.55, 0.70, 100), "modular_regression"),
        ((0.1, 0.3, 200), (0.05, 0.15, 100), "neither"),
        ((0.9, 0.95, 200), (0.40, 0.60, 100), "undecided"),  # MR-only straddles the threshold
        ((0.40, 0.60, 200), (0.05, 0.15, 100), "undecided"),  # RM-solvable straddles it
        ((0.9, 0.95, 200), (0.0, 1.0, 0), "undecided"),  # no MR-only query: RM and MR cannot be told apart
    ],
)
def test_algorithm_label_follows_the_intervals_against_the_threshold(rm, mr, label):
    from modicl.phases import read_algorithm

    fp = {"rm": {"acc_ci": [rm[0], rm[1]], "n": rm[2]}, "mr_only": {"acc_ci": [mr[0], mr[1]], "n": mr[2]}}
    assert read_algorithm(fp, 0.5) == label


def test_phase_table_says_a_check_needs_modular_regression_where_ratio_matching_cannot_pass():
    from modicl.phases import format_table

    r = _reference_result(ratio_matching)[0]
    share = r["fingerprint"]["rm"]["share"]
    text = format_table({"ood_test": r}, p=7, threshold=0.5)
    assert "read as" in text and "ratio matching" in text
    needs = "o.o.d. test: ratio matching can answer only"
    assert (needs in text) == (share < 0.5)
    assert needs in format_table({"ood_test": r}, p=7, threshold=min(1.0, share + 0.01))
    assert needs not in format_table({"ood_test": r}, p=7, threshold=max(0.01, share - 0.01))


def test_answered_mr_only_queries_on_pretraining_tasks_read_as_recall_or_modular_regression():
    from modicl.phases import read_algorithm

    fp = {"rm": {"acc_ci": [0.95, 1.0], "n": 200}, "mr_only": {"acc_ci": [0.9, 1.0], "n": 80}}
    assert read_algorithm(fp, 0.5, pretraining=True) == "recall_or_modular_regression"
    assert read_algorithm(fp, 0.5) == "modular_regression"
