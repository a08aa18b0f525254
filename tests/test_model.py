import dataclasses
import math

import pytest
import torch

from modicl.config import ModelConfig
from modicl.model import Transformer, apply_rope, hook_names, rope_tables


def _model(attention="sdpa", **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, attention=attention, **kw)
    return Transformer(cfg, vocab_size=7, max_len=23).eval()


def test_rope_matches_hand_written_rotation():
    D, T, theta = 8, 6, 10_000.0
    x = torch.randn(T, D)
    cos, sin = rope_tables(T, D, theta)
    got = apply_rope(x, cos, sin)
    want = torch.empty_like(x)
    for t in range(T):
        for i in range(D // 2):
            ang = t * theta ** (-2 * i / D)
            c, s = math.cos(ang), math.sin(ang)
            want[t, 2 * i] = c * x[t, 2 * i] - s * x[t, 2 * i + 1]
            want[t, 2 * i + 1] = s * x[t, 2 * i] + c * x[t, 2 * i + 1]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    D, T = 16, 12
    cos, sin = rope_tables(T, D)
    q, k = torch.randn(D), torch.randn(D)
    rq, rk = apply_rope(q.expand(T, D), cos, sin), apply_rope(k.expand(T, D), cos, sin)
    assert torch.allclose(rq[5] @ rk[3], rq[9] @ rk[7], atol=1e-5)
    assert torch.allclose(rq[4] @ rk[4], q @ k, atol=1e-5)  # zero offset: no rotation left
    assert not torch.allclose(rq[5] @ rk[3], rq[5] @ rk[1], atol=1e-3)


def test_rope_keeps_input_dtype_and_computes_in_fp32():
    cos, sin = rope_tables(4, 8)
    x = torch.randn(2, 4, 8).bfloat16()
    assert apply_rope(x, cos, sin).dtype == torch.bfloat16


def test_manual_attention_equals_sdpa():
    sdpa, manual = _model("sdpa"), _model("manual")
    manual.load_state_dict(sdpa.state_dict())
    tok = torch.randint(0, 7, (5, 23))
    torch.testing.assert_close(manual(tok), sdpa(tok), atol=1e-5, rtol=1e-4)
    _, cache = sdpa.run_with_cache(tok)  # the hooked (explicit) path too
    torch.testing.assert_close(
        sdpa.ln_f(cache["blocks.1.hook_resid_post"]) @ sdpa.wte.weight.T, sdpa(tok), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_changing_a_future_token_leaves_past_logits_unchanged(attention):
    m = _model(attention)
    tok = torch.randint(0, 7, (3, 20))
    tok2 = tok.clone()
    tok2[:, 12] = (tok2[:, 12] + 1) % 7
    a, b = m(tok), m(tok2)
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_hook_points_have_documented_shapes_and_head_results_sum_to_attention_output():
    m = _model()
    tok = torch.randint(0, 7, (2, 11))
    logits, cache = m.run_with_cache(tok)
    assert set(cache) == set(hook_names(2))
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 11, 11)
    assert cache["blocks.1.attn.hook_result"].shape == (2, 11, 4, 32)
    assert cache["blocks.0.hook_mlp_post"].shape == (2, 11, 128)
    torch.testing.assert_close(cache["blocks.1.attn.hook_result"].sum(2), cache["blocks.1.hook_attn_out"])
    pat = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pat.sum(-1), torch.ones(2, 4, 11))
    assert torch.all(pat.triu(1) == 0)  # causal
    torch.testing.assert_close(logits, m(tok), atol=1e-5, rtol=1e-4)


def test_a_hook_can_patch_an_activation():
    m = _model()
    tok = torch.randint(0, 7, (2, 11))
    zero_head0 = lambda z: torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:]], dim=1)
    patched = m(tok, hooks={"blocks.0.attn.hook_z": zero_head0})
    assert not torch.allclose(patched, m(tok))
    with pytest.raises(KeyError, match="unknown hook"):
        m.run_with_cache(tok, names=["blocks.9.hook_resid_post"])


def test_embedding_is_tied_to_unembedding_and_init_follows_the_paper():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(d_model=256, n_layers=4, n_heads=4), vocab_size=29, max_len=95)
    names = [n for n, _ in m.named_parameters()]
    assert not any("lm_head" in n or "unembed" in n for n in names)
    tok = torch.randint(0, 29, (2, 10))
    _, cache = m.run_with_cache(tok, names=["ln_final.hook_normalized"])
    torch.testing.assert_close(m(tok), cache["ln_final.hook_normalized"] @ m.wte.weight.T)
    assert abs(m.blocks[0].fc.weight.std().item() - 0.02) < 0.001
    assert abs(m.blocks[0].proj.weight.std().item() - 0.02 / math.sqrt(8)) < 0.0005
    assert abs(m.wte.weight.std().item() - 0.02) < 0.002
    assert all(not ln.bias.any() and (ln.weight == 1).all() for ln in (m.ln_f, m.blocks[1].ln2))
    assert all(mod.bias is None for mod in m.modules() if isinstance(mod, torch.nn.Linear))


def _reference_rope(x, cos, sin):
    """The rotation written with real arithmetic only, differentiated by autograd."""
    T = x.shape[-2]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:T], sin[:T]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).flatten(-2)


def test_rope_gradient_is_the_inverse_rotation_of_the_upstream_gradient():
    torch.manual_seed(0)
    cos, sin = rope_tables(10, 8)
    x = torch.randn(3, 2, 10, 8, requires_grad=True)
    upstream = torch.randn(3, 2, 10, 8)
    (gx,) = torch.autograd.grad(apply_rope(x, cos, sin), x, upstream)
    (want,) = torch.autograd.grad(_reference_rope(x, cos, sin), x, upstream)
    torch.testing.assert_close(gx, want, atol=1e-6, rtol=1e-5)
    # on a strided view (how attention calls it: q and k sliced out of the fused qkv projection)
    qkv = torch.randn(3, 4, 2, 10, 8)
    torch.testing.assert_close(apply_rope(qkv[:2], cos, sin), _reference_rope(qkv[:2], cos, sin), atol=1e-6, rtol=1e-5)


def _loss_and_grads(model, tok, dtype=None):
    from modicl.steps import z_loss

    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        loss = z_loss(model, tok, n_var=2)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fast_cpu_path_matches_fp32_sdpa_exactly_in_fp32_and_within_bf16_rounding_in_bf16():
    """The CPU path (explicit attention with the mask in baddbmm, complex RoPE with its own backward,
    in-place ReLU) against PyTorch's SDPA with autograd: equal to fp32 rounding in fp32; in bf16
    autocast within bf16 rounding (8 mantissa bits, ≈ 0.4 % per op; measured 2–7 % relative
    gradient error here, the same before and after the RoPE/mask/ReLU changes)."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=2, attention="manual")  # head dim 32: scale 1/√32 is inexact
    fast = Transformer(cfg, vocab_size=29, max_len=48)
    ref = Transformer(dataclasses.replace(cfg, attention="sdpa"), vocab_size=29, max_len=48)
    with torch.no_grad():  # trained-looking weights: larger than the init, so attention is not uniform
        for p in fast.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    ref.load_state_dict(fast.state_dict())
    tok = torch.randint(0, 29, (16, 48))
    loss_ref, g_ref = _loss_and_grads(ref, tok)
    loss32, g32 = _loss_and_grads(fast, tok)
    assert loss32 == pytest.approx(loss_ref, rel=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g32[name], g_ref[name], atol=1e-6, rtol=1e-3, msg=name)
    loss16, g16 = _loss_and_grads(fast, tok, torch.bfloat16)
    assert loss16 == pytest.approx(loss_ref, rel=1e-2)
    for name in g_ref:
        rel = ((g16[name] - g_ref[name]).norm() / g_ref[name].norm()).item()
        assert rel < 0.1, f"{name}: relative gradient error {rel:.3f} in bf16"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_valued_rope_gives_the_same_bits_as_the_complex_multiply(dtype):
    from modicl.model import _rotate, rotate_real

    cos, sin = rope_tables(95, 32)
    x = torch.randn(128, 95, 3, 4, 32, generator=torch.Generator().manual_seed(0)).to(dtype).permute(2, 0, 3, 1, 4)[:2]
    a, b = _rotate(x, cos, sin), rotate_real(x, cos, sin)
    assert b.dtype == dtype and b.shape == x.shape
    assert torch.equal(a, b)  # the same products and sums: not just within rounding


def _indexed_attention(attn, x, rope, queries=None):
    """The attention of modicl.model.Attention written the direct way: one permuted [3, B, H, T, D]
    projection indexed into q, k and v (whose backward zero-fills and adds full-size gradients)."""
    import torch.nn.functional as F

    cos, sin, causal = rope
    B, T, d = x.shape
    H, D = attn.n_heads, d // attn.n_heads
    if queries is None:
        qkv = attn.qkv(x).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], cos, sin).unbind(0)
        z = F.scaled_dot_product_attention(q, k, qkv[2], is_causal=True)
    else:  # keys and values from the weight's last 2·d rows, queries from its first d rows at `queries`
        w = attn.qkv.weight
        kv = F.linear(x, w[d:]).view(B, T, 2, H, D).permute(2, 0, 3, 1, 4)
        xq = x[:, queries]
        q = F.linear(xq, w[:d]).view(B, xq.shape[1], H, D).transpose(1, 2)
        q = apply_rope(q, cos[:T][queries], sin[:T][queries])
        mask = causal[:T][queries, :T].to(q.dtype)
        z = F.scaled_dot_product_attention(q, apply_rope(kv[0], cos, sin), kv[1], attn_mask=mask)
    return attn.o(z.transpose(1, 2).reshape(B, z.shape[2], d))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("queries", [None, slice(2, None, 3)])
def test_attention_gives_the_bits_of_indexing_one_permuted_qkv_projection(dtype, queries):
    # The model splits the fused projection in its own [B, T, 3, H, D] layout so that the backward writes
    # the gradient there without zero-fills and copies: only memory traffic may change, never a bit.
    m = _model()
    attn, rope = m.blocks[0].attn, (m.rope_cos, m.rope_sin, m.causal)
    x = torch.randn(5, 23, 32, generator=torch.Generator().manual_seed(2)).requires_grad_()
    outs = []
    for fn in (lambda: attn(x, rope, queries=queries), lambda: _indexed_attention(attn, x, rope, queries)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            y = fn()
        grads = torch.autograd.grad(y.float().square().sum(), [x, attn.qkv.weight, attn.o.weight])
        outs.append((y, *grads))
    for got, want in zip(*outs):
        assert torch.equal(got, want)


def test_compiled_model_traces_in_one_graph_without_complex_ops(monkeypatch):
    from conftest import without_shape_checks

    import modicl.model

    without_shape_checks(monkeypatch, modicl.model)  # production runs have no shape-check wrappers to trace
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2)
    model = Transformer(cfg, vocab_size=7, max_len=47)
    tokens = torch.randint(0, 7, (4, 46), generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(tokens)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    code = "\n".join(g.code for g in explained.graphs)
    assert "view_as_complex" not in code and "stack" in code  # the real rotation, traced inline
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(compiled(tokens), model(tokens), rtol=0, atol=0)


def test_role_embedding_adds_one_learned_vector_per_position_mod_3_and_is_absent_by_default():
    torch.manual_seed(0)
    plain = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2), 7, 9)
    assert not any("wre" in n for n, _ in plain.named_parameters())
    torch.manual_seed(0)
    m = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2, role_embedding=True), 7, 9)
    tok = torch.tensor([[3, 1, 4, 1, 5, 2, 6, 0]])
    _, cache = m.run_with_cache(tok, ["hook_embed"])
    expected = m.wte.weight[tok[0]] + m.wre.weight[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])]
    assert torch.allclose(cache["hook_embed"][0], expected)


def test_init_std_sets_the_spread_of_every_weight_matrix():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(d_model=128, n_layers=2, n_heads=4, init_std=0.05), 11, 30)
    assert m.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.05, rel=0.02)
    assert m.blocks[1].proj.weight.std().item() == pytest.approx(0.05 / 2, rel=0.02)  # / √(2·n_layers)


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
@pytest.mark.parametrize("n_layers,n_var,role", [(1, 2, False), (2, 2, True), (2, 3, False)])
def test_logits_at_the_query_positions_equal_the_sliced_full_logits_and_gradients(attention, n_layers, n_var, role):
    # The loss path computes the last block's queries, MLP and unembedding at the query positions only;
    # the function, and its gradient, must be the full model's sliced there.
    from modicl.family import query_slice

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=n_layers, n_heads=4, attention=attention, role_embedding=role, init_std=0.3)
    width = n_var + 1
    model = Transformer(cfg, vocab_size=7, max_len=width * 8, role_period=width)
    tok = torch.randint(0, 7, (5, width * 8 - 1), generator=torch.Generator().manual_seed(1))
    sl = query_slice(n_var)
    full = model(tok)[:, sl]
    grads_full = torch.autograd.grad(full.square().sum(), list(model.parameters()))
    part = model(tok, positions=sl)
    assert part.shape == (5, 8, 7)
    torch.testing.assert_close(part, full, atol=1e-6, rtol=1e-5)
    grads_part = torch.autograd.grad(part.square().sum(), list(model.parameters()))
    for a, b in zip(grads_part, grads_full):  # sums over fewer rows: equal up to fp32 rounding of the largest entry
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    _, cache = model.run_with_cache(tok)  # with hooks every position runs, then the logits are sliced
    torch.testing.assert_close(model(tok, hooks={}, positions=sl), model(tok, hooks={})[:, sl], atol=0, rtol=0)
    assert set(cache) == set(hook_names(n_layers))


@pytest.mark.parametrize("name", ["paper", "quick", "quick-p11", "bench"])
@pytest.mark.parametrize("n_var", [2, 3])
def test_the_parameter_count_from_the_config_equals_the_built_model(name, n_var):
    from modicl.model import build_model, count_params, n_params
    from modicl.presets import preset

    cfg = preset(name)
    cfg = dataclasses.replace(
        cfg, task=dataclasses.replace(cfg.task, n_var=n_var, rule="random" if n_var == 3 else cfg.task.rule)
    )
    for role in (False, True):
        c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, role_embedding=role))
        assert count_params(c) == n_params(build_model(c))


def test_the_attention_path_is_decided_in_one_place():
    from modicl.model import uses_explicit_attention

    assert [uses_explicit_attention(i, d) for i in ("manual", "auto", "sdpa") for d in ("cpu", "cuda")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
