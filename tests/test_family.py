import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from modicl import family
from modicl.algorithms import (
    modular_regression,
    ratio_matching,
    ratio_matching_expected_accuracy,
    solve_task,
    span_scan,
)
from modicl.analysis.measures import kshot_grid, ratio_classes
from modicl.cli import main
from modicl.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig, validate
from modicl.data import sample_sequences, z_logits, z_targets
from modicl.hashing import config_hash
from modicl.metrics import SETS, query_structure
from modicl.model import build_model
from modicl.steps import z_loss
from modicl.tasks import TaskSet, make_task_set


def test_the_paper_family_lays_out_x_y_z_triples():
    assert family.example_width(2) == 3
    assert family.sequence_length(32, 2) == 96 and family.input_length(32, 2) == 95  # PAPER.md §1.3
    pos = np.arange(9)
    assert pos[family.label_slice(2)].tolist() == [2, 5, 8]  # z_j at 3j + 2
    assert pos[family.query_slice(2)].tolist() == [1, 4, 7]  # predicted from the y_j token
    assert family.example_positions(1, 2) == [3, 4, 5]


def test_vectors_are_numbered_lexicographically_as_the_official_pairs():
    idx = np.arange(49)
    assert np.array_equal(family.vectors(idx, 7, 2), np.stack([idx // 7, idx % 7], axis=1))
    assert family.all_vectors(3, 2).tolist() == [list(t) for t in itertools.product(range(3), repeat=2)]
    assert np.array_equal(family.index_of(family.all_vectors(5, 2), 5), np.arange(25))


def test_the_complement_is_every_other_task_in_order():
    tasks = np.array([[0, 1], [2, 2], [1, 0]])
    rest = family.complement(tasks, 3, 2).tolist()
    assert rest == [[a, b] for a in range(3) for b in range(3) if [a, b] not in tasks.tolist()]


def test_the_input_split_matches_the_official_sizes():
    sizes = [len(family.input_split(29, a, 0, n_var=2)[0]) for a in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    assert sizes == [168, 252, 336, 420, 505, 589, 673]  # PAPER.md §1.5


def test_layout_helpers_read_the_family():
    tasks = torch.tensor([[2, 3]])
    tok = sample_sequences(tasks, torch.tensor([[1, 4], [5, 0]]), 2, 4, 7, torch.Generator().manual_seed(0))
    assert tok.shape == (2, 12)
    x, z = family.examples(tok, 2)
    assert torch.equal(z, z_targets(tok, n_var=2)) and torch.equal(z, (2 * x[..., 0] + 3 * x[..., 1]) % 7)
    logits = torch.arange(11).view(1, 11, 1).expand(1, 11, 2)
    assert z_logits(logits, n_var=2)[0, :, 0].tolist() == [1, 4, 7, 10]


def _rank_mod_p(rows: list[list[int]], p: int) -> int:
    """Rank over Z_p by brute force: the size of the span, as a power of p."""
    if not rows:
        return 0
    span = {
        tuple((sum(c * r[i] for c, r in zip(cs, rows))) % p for i in range(len(rows[0])))
        for cs in itertools.product(range(p), repeat=len(rows))
    }
    return round(np.log(len(span)) / np.log(p))


@pytest.mark.parametrize("n_var", [2, 3])
def test_span_scan_matches_brute_force_ranks(n_var):
    p, k = 3, 5
    g = torch.Generator().manual_seed(n_var)
    xs = torch.randint(0, p, (40, k, n_var), generator=g)
    xs[:5] = 0  # some all-zero contexts
    xs[5:10, :, 1:] = 0  # some contexts on one line
    w = torch.randint(0, p, (40, 1, n_var), generator=g)
    z = family.task_labels(xs, w, p)
    in_span, implied, _, _ = span_scan(xs, z, p)
    for b in range(40):
        rows = xs[b].tolist()
        for j in range(k):
            want = _rank_mod_p(rows[: j + 1], p) == _rank_mod_p(rows[:j], p)
            assert bool(in_span[b, j]) == want
            assert int(implied[b, j]) == (int(z[b, j]) if want else -1)


def test_n_var_is_a_task_field_that_keeps_every_existing_run_name():
    cfg = RunConfig()
    assert cfg.task.n_var == 2
    d = dataclasses.asdict(cfg)
    assert "n_var" in d["task"]
    assert config_hash(cfg) == "9ccaba1676a5"  # the paper preset's name before the field existed


def test_an_unsupported_n_var_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match="task.n_var = 1 is not supported"):
        validate(RunConfig(task=TaskConfig(n_var=1)))


# ------------------------------------------------------------------------------ three inputs per example


def test_a_three_variable_sequence_is_x1_x2_x3_z_with_hand_worked_labels():
    # task w = (1, 2, 3) mod 5 on three inputs, drawn without replacement from a pool of exactly three
    w = torch.tensor([[1, 2, 3]])
    pool = torch.tensor([[1, 1, 1], [2, 0, 4], [0, 3, 1]])
    by_hand = {(1, 1, 1): 1, (2, 0, 4): 4, (0, 3, 1): 4}  # 1+2+3 = 6; 2+0+12 = 14; 0+6+3 = 9 (mod 5)
    tok = sample_sequences(w, pool, 1, 3, 5, torch.Generator().manual_seed(0), replacement=False)
    assert tok.shape == (1, 12)  # 3 examples × 4 tokens
    rows = tok.view(3, 4).tolist()
    assert sorted(tuple(r[:3]) for r in rows) == sorted(by_hand)  # each pool input once
    assert all(r[3] == by_hand[tuple(r[:3])] for r in rows)
    assert z_targets(tok, n_var=3).tolist() == [[r[3] for r in rows]]
    assert tok[0, 3::4].tolist() == z_targets(tok, n_var=3)[0].tolist()


def test_three_variable_layout_and_loss_mask_positions():
    assert family.example_width(3) == 4
    assert family.sequence_length(5, 3) == 20 and family.input_length(5, 3) == 19
    pos = np.arange(19)
    assert pos[family.label_slice(3)].tolist() == [3, 7, 11, 15]  # the 5th label, 19, is never read
    assert pos[family.query_slice(3)].tolist() == [2, 6, 10, 14, 18]  # x3 of every example predicts its z
    assert family.example_positions(2, 3) == [8, 9, 10, 11]


def test_the_loss_is_on_the_z_tokens_only_for_three_inputs():
    p, n_ctx = 5, 4
    g = torch.Generator().manual_seed(1)
    tok = sample_sequences(
        torch.tensor([[1, 2, 3], [4, 0, 2]]), torch.as_tensor(family.all_vectors(p, 3)), 3, n_ctx, p, g
    )
    nxt = tok[:, 1:]  # the token each position is followed by

    def right_only_at(right):
        def model(inputs, positions=slice(None)):  # the model protocol: logits at ``positions``
            wrong = (nxt + 1) % p
            target = wrong.clone()
            target[:, right] = nxt[:, right]
            return 50.0 * torch.nn.functional.one_hot(target, p).float()[:, positions]

        return model

    assert z_loss(right_only_at(slice(2, None, 4)), tok, n_var=3).item() == pytest.approx(0.0, abs=1e-6)
    assert (
        z_loss(right_only_at(slice(1, None, 3)), tok, n_var=3).item() > 10
    )  # the n_var = 2 positions are not the mask


@pytest.mark.parametrize("p", [3, 5])
def test_three_variable_enumerations_match_brute_force(p):
    every = list(itertools.product(range(p), repeat=3))
    assert family.n_vectors(p, 3) == len(every) == p**3
    assert [tuple(v) for v in family.all_vectors(p, 3).tolist()] == every
    assert np.array_equal(family.index_of(family.all_vectors(p, 3), p), np.arange(p**3))
    rng = np.random.default_rng(0)
    chosen = [every[i] for i in rng.choice(len(every), size=7, replace=False)]
    rest = [tuple(v) for v in family.complement(np.array(chosen), p, 3).tolist()]
    assert rest == [v for v in every if v not in chosen] and len(rest) == p**3 - 7
    train, test = family.input_split(p, 0.6, 0, n_var=3)
    assert len(train) == round(p**3 * 0.6) and len(train) + len(test) == p**3
    assert sorted(map(tuple, np.concatenate([train, test]).tolist())) == every


def test_a_three_variable_task_set_holds_disjoint_tasks_from_z_p_cubed():
    ts = make_task_set(TaskConfig(p=5, n_var=3, rule="random", n_id=10, n_ood=20, alpha=0.5), seed=3)
    assert ts.n_var == 3 and ts.id_tasks.shape == (10, 3)
    assert ts.train_pairs.shape == (round(125 * 0.5), 3) and len(ts.train_pairs) + len(ts.test_pairs) == 125
    ids, val, test = (set(map(tuple, a.tolist())) for a in (ts.id_tasks, ts.val_tasks, ts.ood_tasks))
    assert len(ids) == 10 and len(val) == 20 and len(test) == 20  # 115 held out: half (capped at 20) each
    assert not ids & val and not ids & test and not val & test
    assert all(0 <= v < 5 for t in ids | val | test for v in t)
    back = TaskSet.from_json(ts.to_json())
    assert back.n_var == 3 and np.array_equal(back.val_tasks, ts.val_tasks)


def test_three_variable_configs_are_validated_in_one_line():
    ok = RunConfig(task=TaskConfig(p=5, n_var=3, rule="random", n_id=8), train=TrainConfig(batch_size=64))
    assert validate(ok) is ok
    assert config_hash(ok) != config_hash(dataclasses.replace(ok, task=dataclasses.replace(ok.task, n_var=2)))
    with pytest.raises(ConfigError, match="needs task.n_var = 2; use --task.rule random"):
        validate(dataclasses.replace(ok, task=dataclasses.replace(ok.task, rule="rectangular")))
    with pytest.raises(ConfigError, match=r"must be in \[1, p³ - 1 = 124\]"):
        validate(dataclasses.replace(ok, task=dataclasses.replace(ok.task, n_id=125)))
    with pytest.raises(ConfigError, match="task.n_var = 4 is not supported"):
        validate(dataclasses.replace(ok, task=dataclasses.replace(ok.task, n_var=4)))


def test_the_role_embedding_has_period_four_with_three_inputs():
    cfg = RunConfig(
        task=TaskConfig(p=5, n_var=3, rule="random", n_id=8, n_ctx=6),
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2, role_embedding=True),
    )
    model = build_model(cfg)
    assert model.wre.weight.shape == (4, 16) and model.max_len == 24
    embed = {}
    model(torch.zeros(1, 23, dtype=torch.long), hooks={"hook_embed": lambda t: embed.setdefault("x", t)})
    e = embed["x"][0]
    assert torch.equal(e[0], e[4]) and torch.equal(e[3], e[19]) and not torch.equal(e[0], e[3])


def _brute_force_span(ctx: list[list[int]], q: list[int], p: int) -> bool:
    return any(
        all(sum(c * r[i] for c, r in zip(cs, ctx)) % p == q[i] for i in range(len(q)))
        for cs in itertools.product(range(p), repeat=len(ctx))
    )


def test_three_variable_reference_algorithms_match_brute_force():
    p, k = 3, 3
    g = torch.Generator().manual_seed(5)
    every = torch.as_tensor(family.all_vectors(p, 3))
    for _ in range(25):
        w = torch.randint(0, p, (3,), generator=g)
        ctx = every[torch.randint(0, len(every), (k,), generator=g)]
        z = family.task_labels(ctx, w, p)
        truth = family.task_labels(every, w, p)
        mr = modular_regression(ctx.expand(len(every), -1, -1), z.expand(len(every), -1), every, p)
        rm = ratio_matching(ctx.expand(len(every), -1, -1), z.expand(len(every), -1), every, p)
        consistent = [
            t
            for t in itertools.product(range(p), repeat=3)
            if all(sum(a * b for a, b in zip(t, x)) % p == zz for x, zz in zip(ctx.tolist(), z.tolist()))
        ]
        for q, m, r, t in zip(every.tolist(), mr.tolist(), rm.tolist(), truth.tolist()):
            answers = {sum(a * b for a, b in zip(c, q)) % p for c in consistent}
            assert (m == t) == (len(answers) == 1) and m in (t, -1)  # MR answers exactly where the answer is determined
            on_line = q == [0, 0, 0] or any(any(x) and _brute_force_span([x], q, p) for x in ctx.tolist())
            assert (r == t) == on_line and r in (t, -1)
        found, ok = solve_task(ctx, z, p)
        assert bool(ok) == (len(consistent) == 1)
        assert found.tolist() == (list(consistent[0]) if ok else [-1, -1, -1])


def test_three_variable_null_models_in_the_metrics_match_brute_force():
    p, n_ctx = 3, 5
    g = torch.Generator().manual_seed(2)
    tok = sample_sequences(
        torch.tensor([[1, 2, 0], [2, 2, 1]]),
        torch.as_tensor(family.all_vectors(p, 3)),
        20,
        n_ctx,
        p,
        g,
        shared_inputs=False,
    )
    st = query_structure(tok, p, n_var=3)
    xs, _ = family.examples(tok, 3)
    for b in range(len(tok)):
        rows = xs[b].tolist()
        for k in range(n_ctx):
            q, before = rows[k], rows[:k]
            assert bool(st["copy"][b, k]) == (q in before)
            assert bool(st["ratio_matching"][b, k]) == (
                q == [0, 0, 0] or any(any(x) and _brute_force_span([x], q, p) for x in before)
            )
            assert bool(st["modular_regression"][b, k]) == (
                q == [0, 0, 0] or (bool(before) and _brute_force_span(before, q, p))
            )


def test_ratio_matching_expected_accuracy_counts_the_lines_of_z_p_cubed():
    p = 3
    every = [list(v) for v in itertools.product(range(p), repeat=3)]
    for k in (1, 2):  # every set of k distinct context inputs, every query: solved at the origin or on a context line
        solved = [
            sum(q == [0, 0, 0] or any(any(c) and _brute_force_span([c], q, p) for c in ctx) for q in every)
            for ctx in itertools.combinations(every, k)
        ]
        assert ratio_matching_expected_accuracy(p, k, n_var=3) == pytest.approx(sum(solved) / len(solved) / 27)
    assert ratio_matching_expected_accuracy(p, 1, n_var=3) == pytest.approx(79 / 729)  # (26/27)·(3/27) + (1/27)·(1/27)


def test_planar_analyses_refuse_three_inputs():
    with pytest.raises(ValueError, match="needs n_var = 2"):
        ratio_classes(torch.zeros(4, 3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="needs n_var = 2"):
        kshot_grid(torch.nn.Linear(1, 1), (1, 2, 3), torch.zeros(2, 3, dtype=torch.long), [1], 5)


TINY3 = [
    "--task.p",
    "5",
    "--task.n-var",
    "3",
    "--task.rule",
    "random",
    "--task.n-id",
    "4",
    "--task.n-ctx",
    "6",
    "--model.d-model",
    "32",
    "--model.n-layers",
    "1",
    "--model.n-heads",
    "2",
    "--model.role-embedding",
    "--train.batch-size",
    "16",
    "--train.steps",
    "4",
    "--train.eval-every",
    "2",
    "--train.eval-sequences",
    "16",
    "--train.dtype",
    "fp32",
    "--train.warmup-steps",
    "1",
    "--train.device",
    "cpu",
    "--no-progress",
]


def test_modicl_train_eval_and_analyze_run_with_three_inputs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY3, "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"]["n_var"] == 3
    tasks = json.loads((run / "tasks.json").read_text())
    assert len(tasks["id_tasks"]) == 4 and all(
        len(t) == 3 for key in ("id_tasks", "ood_tasks", "train_pairs") for t in tasks[key]
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4]
    for r in rows[1:]:
        assert r["train_loss"] > 0 and len(r["attention"]["prev_token"]) == 1
    for s in SETS:
        m = rows[-1][s]
        assert 0 <= m["acc"] <= 1 and m["loss"] > 0 and len(m["kshot"]) == 6
        assert (
            m["baselines"]["modular_regression"]["kshot"][0] <= m["baselines"]["modular_regression"]["kshot"][-1] + 1e-9
        )
    assert main(["eval", str(run), "--sequences", "16", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--what", "pca"]) == 2
    assert "needs task.n_var = 2" in capsys.readouterr().err
    assert main(["analyze", str(run), "--what", "attention", "algorithms", "noise", "lens"]) == 0
    res = json.loads((run / "analysis" / "analysis.json").read_text())
    assert len(res["task"]) == 3 and res["probes"]["of"] == 125 and len(res["algorithms"]["o.o.d."]["model"]) == 6
    assert main(["analyze", str(run)]) == 0
    res = json.loads((run / "analysis" / "analysis.json").read_text())
    assert set(res["skipped"]) == {"pca", "kaleidoscope", "kshot"}
