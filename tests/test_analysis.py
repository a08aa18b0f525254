import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from modicl.algorithms import modular_regression
from modicl.analysis.measures import (
    algorithm_curves,
    all_inputs,
    centered_pca,
    circularity,
    cosine_matrix,
    head_scores,
    kshot_grid,
    label_noise,
    logit_lens,
    name_head,
    probe_batch,
    ratio_classes,
    ratio_invariance,
)
from modicl.config import ModelConfig
from modicl.model import Transformer


class Oracle(nn.Module):
    """A stand-in model whose prediction at every y position is modular regression on the examples
    before it (or a fixed task, ignoring the context): logits one-hot on that answer."""

    def __init__(self, p, max_len, fixed_task=None):
        super().__init__()
        self.p, self.max_len, self.fixed = p, max_len, fixed_task
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens, positions=slice(None)):  # the model protocol: logits at ``positions``
        B, T = tokens.shape
        full = torch.cat([tokens, torch.zeros(B, 1, dtype=tokens.dtype)], 1).view(B, -1, 3)
        xy, z = full[..., :2], full[..., 2]
        logits = torch.zeros(B, T, self.p)
        for k in range(xy.shape[1]):
            if self.fixed is not None:
                pred = (xy[:, k] * torch.tensor(self.fixed)).sum(-1) % self.p
            elif k == 0:
                pred = torch.zeros(B, dtype=torch.int64)
            else:
                pred = modular_regression(xy[:, :k], z[:, :k], xy[:, k], self.p).clamp_min(0)
            logits[torch.arange(B), 3 * k + 1, pred] = 1.0
        return logits[:, positions]


def test_probe_batch_sweeps_one_example_over_all_pairs():
    tok = probe_batch((2, 3), 5, 4, 1, torch.Generator().manual_seed(0))
    seq = tok.view(25, 4, 3)
    assert torch.equal(seq[:, 1, :2], all_inputs(5, n_var=2))
    assert torch.equal(seq[:, [0, 2, 3]], seq[:1, [0, 2, 3]].expand(25, -1, -1))  # the other examples are fixed
    assert torch.equal(seq[..., 2], (2 * seq[..., 0] + 3 * seq[..., 1]) % 5)


def test_head_scores_on_hand_built_patterns():
    T = 12
    prev, sink, stripe = torch.zeros(T, T), torch.zeros(T, T), torch.zeros(T, T)
    prev[0, 0] = sink[:, 0] = 1
    for t in range(1, T):
        prev[t, t - 1] = 1
    for t in range(T):
        s = [u for u in range(t - 3, -1, -3)]
        stripe[t, s if s else [t]] = 1 / max(len(s), 1)
    scores = head_scores(torch.stack([prev, sink, stripe])[None], n_var=2)
    assert scores["previous"].tolist() == pytest.approx([1, 1 / 11, 0]) and scores["sink"][1] == pytest.approx(1)
    assert scores["stripe"][2] == pytest.approx(1) and scores["previous"][2] == 0
    assert [name_head(scores, h) for h in range(3)] == ["previous", "sink", "stripe"]


def test_circle_of_circles_scores_and_centered_pca():
    p = 11
    pairs = all_inputs(p, n_var=2)
    x, y = pairs[:, 0].double(), pairs[:, 1].double()
    R, r = 3.0, 1.0
    pts = torch.stack(
        [
            R * torch.cos(2 * math.pi * x / p) + r * torch.cos(2 * math.pi * y / p),
            R * torch.sin(2 * math.pi * x / p) + r * torch.sin(2 * math.pi * y / p),
        ],
        1,
    )
    embed = torch.cat([pts, torch.zeros(len(pts), 5)], 1) @ torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64))[0]
    proj, var = centered_pca(embed.float() + 4.0)  # an offset: centring must remove it
    assert var.sum() == pytest.approx(1.0, abs=1e-5)
    c = circularity(proj, pairs[:, 0], pairs[:, 1])
    assert c["outer_ring"] > 0.99 and c["inner_rings"] > 0.99
    assert c["x_separation"] == pytest.approx(R**2 / (R**2 + r**2), abs=0.01)
    noise = circularity(torch.randn(p * p, 2), pairs[:, 0], pairs[:, 1])
    assert noise["x_separation"] < 0.3
    # an ellipse: the first direction is the long axis, with the largest coordinate made positive
    t = torch.linspace(0, 2 * math.pi, 101)[:-1]
    ellipse = torch.stack([-3 * torch.cos(t), torch.sin(t), torch.zeros_like(t)], 1) + 10
    proj, var = centered_pca(ellipse)
    assert var.tolist() == pytest.approx([0.9, 0.1], abs=1e-4)
    assert torch.allclose(proj[:, 0].abs(), 3 * torch.cos(t).abs(), atol=1e-4)
    assert proj[0, 0] == pytest.approx(-3, abs=1e-4)  # direction +x (its largest coordinate positive): −3·cos 0


def test_kaleidoscope_ratio_invariance():
    p = 7
    pairs = all_inputs(p, n_var=2)
    cls = ratio_classes(pairs, p)
    assert cls[p * 2 + 4] == (4 * pow(2, -1, p)) % p and cls[3] == p and cls[0] == -1  # (2,4): 4/2; (0,3): vertical
    features = torch.nn.functional.one_hot(cls.clamp_min(0), p + 1).float() + 0.05 * torch.randn(p * p, p + 1)
    sim = cosine_matrix(features)
    assert torch.allclose(sim.diagonal(), torch.ones(p * p), atol=1e-5)
    ratio = ratio_invariance(sim, pairs, p)
    assert ratio["same_line"] > 0.9 and ratio["gap"] > 0.9
    assert abs(ratio_invariance(cosine_matrix(torch.randn(p * p, 32)), pairs, p)["gap"]) < 0.05
    # restricted to rows and columns: held-out inputs (here every pair with x = 1) whose features name the
    # next line instead of their own, against training inputs whose features name their own line exactly
    held = pairs[:, 0] == 1
    line = torch.where(held, (cls + 1) % (p + 1), cls).clamp_min(0)
    feats = torch.nn.functional.one_hot(line, p + 1).double()
    sim = feats @ feats.T  # 1 between inputs whose features name the same line, else 0
    across = ratio_invariance(sim, pairs, p, held, ~held)
    assert across["same_line"] == 0.0 and across["gap"] < 0  # a held-out input never sits with its own line
    assert ratio_invariance(sim, pairs, p, ~held, ~held)["gap"] == 1.0  # training inputs: same line 1, others 0
    assert math.isnan(ratio_invariance(sim, pairs, p, held, held & (pairs[:, 1] == 99))["gap"])  # no columns


def test_kshot_grid_and_algorithm_curves_with_an_oracle_model():
    p, n_ctx = 7, 6
    oracle = Oracle(p, 3 * n_ctx)
    context = torch.tensor([[1, 2], [2, 4], [3, 1]])  # the 2nd is on the 1st's line; the 3rd is independent
    grid = kshot_grid(oracle, (3, 5), context, [1, 2, 3], p)
    # one example: MR = RM; off the line the oracle answers 0, right exactly where z = 3x + 5y ≡ 0
    zero = (3 * all_inputs(p, n_var=2)[:, 0] + 5 * all_inputs(p, n_var=2)[:, 1]).view(p, p) % p == 0
    assert torch.equal(grid[1]["model"], grid[1]["ratio_matching"] | zero)
    assert grid[1]["ratio_matching"].sum() == 7  # the line through (1, 2): origin + 6 points
    assert torch.equal(grid[2]["model"], grid[1]["model"])  # (2, 4) adds no new line
    assert grid[3]["model"].all() and grid[3]["difference"].sum() == 49 - 13  # RM covers two lines: 1 + 2·6
    g = torch.Generator().manual_seed(0)
    tasks = torch.tensor([[1, 2], [3, 3], [6, 1]])
    curves = algorithm_curves(oracle, tasks, all_inputs(p, n_var=2), tasks[:1], n_ctx, p, sequences=50, generator=g)
    # wherever MR predicts, the oracle says the same; elsewhere it answers 0, right only by luck
    assert all(a == pytest.approx(1.0) for a in curves["agree_modular_regression"])
    assert all(m >= r - 1e-9 for m, r in zip(curves["model"], curves["modular_regression"]))
    assert curves["modular_regression"][3] > 0.95 and curves["ratio_matching"][1] < 0.3


def test_label_noise_and_logit_lens():
    p, n_ctx = 7, 5
    g = torch.Generator().manual_seed(0)
    fixed = Oracle(p, 3 * n_ctx, fixed_task=(2, 5))  # ignores its context: noise cannot hurt it
    acc = label_noise(fixed, torch.tensor([[2, 5]]), all_inputs(p, n_var=2), n_ctx, p, sequences=40, generator=g)
    assert acc == [1.0] * n_ctx
    reader = Oracle(p, 3 * n_ctx)  # modular regression: wrong once the labels it solves from are corrupted
    acc = label_noise(
        reader, torch.tensor([[2, 5], [1, 1]]), all_inputs(p, n_var=2), n_ctx, p, sequences=200, generator=g
    )
    assert acc[0] > 0.9 and acc[-1] < 0.3
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2), p, 3 * n_ctx).eval()
    tokens = probe_batch((1, 2), p, n_ctx, n_ctx - 1, g)
    lens = logit_lens(model, tokens)
    from modicl.analysis.measures import predict_last

    assert len(lens) == 2 and lens[-1] == pytest.approx(
        (predict_last(model, tokens, n_var=2)[:, -1] == tokens[:, -1]).float().mean().item()
    )


def test_modicl_analyze_writes_every_figure_and_the_numbers(tmp_path, capsys):
    from conftest import tiny_config

    from modicl.cli import main
    from modicl.training import train

    train(tiny_config(steps=20, eval_every=10), tmp_path / "run", progress=False)
    assert (
        main(["analyze", str(tmp_path / "run"), "--task", "1,2", "--context", "1,1;2,3;0,4", "--shots", "1", "3"]) == 0
    )
    out = capsys.readouterr().out
    assert "probe task (1, 2)" in out and "k-shot grid accuracy" in out
    res = json.loads((tmp_path / "run" / "analysis" / "analysis.json").read_text())
    assert set(res) >= {"attention", "pca", "kaleidoscope", "kshot", "algorithms", "label_noise", "logit_lens"}
    gaps = res["kaleidoscope"]["blocks"]  # the printed gaps are the saved ones, one line per split
    assert f"block outputs at z_k: block0 {gaps['block0_z']['gap']:.2f}" in out
    assert f"training inputs: block0 {gaps['block0_z_heldout_vs_train']['gap']:.2f}" in out
    assert res["kshot"]["context"] == [[1, 1], [2, 3], [0, 4]] and set(res["kshot"]) == {"context", "1", "3"}
    assert len(res["algorithms"]["o.o.d."]["model"]) == 4 and len(res["logit_lens"]["i.d."]) == 1
    for fig in res["figures"]:
        assert (tmp_path / "run" / fig).exists() and (tmp_path / "run" / fig).with_suffix(".pdf").exists()
    assert main(["analyze", str(tmp_path / "run"), "--task", "1,9"]) == 2
    assert "two residues mod p = 5" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "run"), "--what", "kshot", "--context", "1,2;9,9"]) == 2
    assert "two residues mod p = 5" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "run"), "--what", "kshot", "--shots", "99"]) == 2
    assert "shot counts must be in [0, 3]" in capsys.readouterr().err
    assert "NaN" not in (tmp_path / "run" / "analysis" / "analysis.json").read_text()


def test_default_probe_task_is_a_non_degenerate_ood_test_task_and_its_membership_is_named():
    import numpy as np

    from modicl.analysis.registry import default_probe_task, task_membership
    from modicl.tasks import TaskSet

    e = np.zeros((0, 2), dtype=np.int64)
    ts = TaskSet(7, np.array([[1, 1]]), np.array([[0, 3], [4, 0], [2, 5]]), e, e, np.array([[3, 3]]))
    assert default_probe_task(ts) == (2, 5)
    assert [task_membership(ts, t) for t in ((1, 1), (3, 3), (0, 3), (6, 6))] == [
        "pre-training",
        "o.o.d. validation",
        "o.o.d. test",
        "none",
    ]


def test_probe_activations_keep_only_what_is_asked_and_equal_one_full_pass():
    from modicl.analysis.registry import probe_activations
    from modicl.model import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2), 5, 12).eval()
    tokens = torch.randint(0, 5, (25, 11))
    names = {
        "blocks.1.attn.hook_pattern": None,
        "blocks.0.hook_resid_post": [3, 4, 5],
        "blocks.1.attn.hook_result": [4],
    }
    got = probe_activations(model, tokens, names, batch_size=7)
    with torch.no_grad():
        _, full = model.run_with_cache(tokens)
    assert set(got) == {*names, "blocks.1.attn.hook_pattern.first"}
    torch.testing.assert_close(
        got["blocks.1.attn.hook_pattern"], full["blocks.1.attn.hook_pattern"].mean(0, keepdim=True)
    )
    torch.testing.assert_close(got["blocks.1.attn.hook_pattern.first"], full["blocks.1.attn.hook_pattern"][:1])
    torch.testing.assert_close(got["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"][:, [3, 4, 5]])
    torch.testing.assert_close(got["blocks.1.attn.hook_result"], full["blocks.1.attn.hook_result"][:, [4]])


@pytest.mark.parametrize("n_ctx", [1, 2])
def test_analyses_that_need_more_examples_than_the_context_holds_are_skipped_with_a_note(tmp_path, capsys, n_ctx):
    from conftest import tiny_config

    from modicl.cli import main
    from modicl.training import train

    cfg = tiny_config(steps=4, eval_every=4)
    train(dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, n_ctx=n_ctx)), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "run"), "--checkpoint", "last", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for name in ("attention", "pca", "kaleidoscope"):
        assert f"skipped {name}: needs n_ctx ≥ 3" in out
    res = json.loads((tmp_path / "run" / "analysis" / "analysis.json").read_text())
    assert set(res["skipped"]) == {"attention", "pca", "kaleidoscope"}
    assert {"kshot", "algorithms", "label_noise", "logit_lens"} <= set(res)


def test_probe_analyses_above_max_probes_use_a_stated_random_subset(tmp_path):
    from conftest import tiny_config

    from modicl.analysis.registry import run_analyses
    from modicl.training import train

    train(tiny_config(steps=4, eval_every=4), tmp_path / "run", progress=False)
    res = run_analyses(tmp_path / "run", "last", what=("attention", "pca", "kaleidoscope"), device="cpu", max_probes=16)
    assert res["probes"] == {"used": 16, "of": 25, "subsampled": True}
    assert "kaleidoscope" in res and "pca" in res
    full = run_analyses(tmp_path / "run", "last", what=("attention",), device="cpu")
    assert full["probes"] == {"used": 25, "of": 25, "subsampled": False}


def test_a_registered_analysis_is_a_cli_choice_and_runs_with_the_probe_activations_it_asks_for(
    tmp_path, monkeypatch, capsys
):
    from conftest import tiny_config

    import modicl.analysis.registry as analyze
    from modicl.cli import main
    from modicl.training import train

    monkeypatch.setattr(analyze, "ANALYSES", dict(analyze.ANALYSES))  # registered for this test only
    seen = {}

    @analyze.analysis(
        "resid-norm", key="resid_norm", probe_hooks=lambda i, xyz: {f"blocks.{i}.hook_resid_post": xyz[2:]}
    )
    def resid_norm(s):
        seen.update(s.cache)
        return [float(s.cache[f"blocks.{i}.hook_resid_post"].norm()) for i in range(s.cfg.model.n_layers)], []

    train(tiny_config(steps=4, eval_every=4), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert (
        main(["analyze", str(tmp_path / "run"), "--checkpoint", "last", "--device", "cpu", "--what", "resid-norm"]) == 0
    )
    res = json.loads((tmp_path / "run" / "analysis" / "analysis.json").read_text())
    assert len(res["resid_norm"]) == 1 and res["resid_norm"][0] > 0
    assert set(seen) == {"blocks.0.hook_resid_post"} and seen["blocks.0.hook_resid_post"].shape[1] == 1  # only z_k
    assert "attention" not in res and res["probes"]["used"] == 25
    capsys.readouterr()
    # tyro refuses a name the registry does not hold: one line naming the choices, exit 2
    assert main(["analyze", str(tmp_path / "run"), "--what", "no-such-analysis"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice 'no-such-analysis'" in err and "resid-norm" in err and "---" not in err, err
