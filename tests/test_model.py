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
    torch.testing.assert_close(sdpa.ln_f(cache["blocks.1.hook_resid_post"]) @ sdpa.wte.weight.T, sdpa(tok), atol=1e-5, rtol=1e-4)


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
    assert all(not l.bias.any() and (l.weight == 1).all() for l in (m.ln_f, m.blocks[1].ln2))
    assert all(mod.bias is None for mod in m.modules() if isinstance(mod, torch.nn.Linear))
