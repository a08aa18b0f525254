import copy

import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from modicl.muon import NS_COEFFICIENTS, NS_EPS, NS_STEPS, Muon, lr_scale, orthogonalize, resolve_ns_dtype

SHAPES = [(64, 64), (192, 64), (64, 256)]  # square, tall and wide: the blocks' matrices at d_model 64


def _grads(shape, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_iteration_is_torch_muons_bit_for_bit(shape):
    (g,) = _grads(shape, 1)
    want = _zeropower_via_newtonschulz(g, NS_COEFFICIENTS, NS_STEPS, NS_EPS)
    assert torch.equal(orthogonalize(g, torch.bfloat16), want)


@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_iteration_is_closer_to_the_exact_iteration_than_bf16(shape):
    (g,) = _grads(shape, 1, seed=1)
    exact = orthogonalize(g.double(), torch.float64)
    err32 = (orthogonalize(g, torch.float32).double() - exact).abs().max().item()
    err16 = (orthogonalize(g, torch.bfloat16).double() - exact).abs().max().item()
    assert err32 < 1e-4 < err16 and err32 < err16 / 100
    # the iteration pushes the singular values into a band around 1 (Jordan et al.: ≈ 0.7-1.2); only the
    # very smallest of a random square matrix's stay below it after 5 steps
    s = torch.linalg.svdvals(exact)
    assert s.max() < 1.25 and (s > 0.6).double().mean() > 0.95


def _step_both(params_a, params_b, grads_per_step, ns_dtype, **kw):
    ours = Muon(params_a, ns_dtype=ns_dtype, **kw)
    ref = torch.optim.Muon(params_b, adjust_lr_fn="match_rms_adamw", **kw)
    for grads in grads_per_step:
        for pa, pb, g in zip(params_a, params_b, grads):
            pa.grad, pb.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    return ours, ref


def test_muon_steps_equal_torch_optim_muon_in_bf16_and_stay_within_bf16_rounding_in_fp32():
    shapes = SHAPES
    start = [torch.randn(s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(shapes)]
    grads = [
        [torch.randn(s, generator=torch.Generator().manual_seed(100 * t + i)) for i, s in enumerate(shapes)]
        for t in range(4)
    ]
    kw = dict(lr=2e-3, weight_decay=0.5)
    a, b = [p.clone() for p in start], [p.clone() for p in start]
    _step_both(a, b, grads, torch.bfloat16, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    a, b = [p.clone() for p in start], [p.clone() for p in start]
    _step_both(a, b, grads, torch.float32, **kw)
    for x, y, p0 in zip(a, b, start):
        moved = (y - p0).abs().max()
        # the two differ by the bf16 rounding of the update: a few per cent of the step, never more
        assert 0 < (x - y).abs().max() < 0.05 * moved


def test_a_stacked_parameter_is_each_member_stepped_alone():
    members = 3
    start = [torch.randn(members, *s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(SHAPES)]
    grads = [
        [
            torch.randn(members, *s, generator=torch.Generator().manual_seed(7 + 10 * t + i))
            for i, s in enumerate(SHAPES)
        ]
        for t in range(3)
    ]
    stacked = [p.clone() for p in start]
    opt = Muon(stacked, lr=2e-3, weight_decay=0.5, ns_dtype=torch.float32)
    for gs in grads:
        for p, g in zip(stacked, gs):
            p.grad = g.clone()
        opt.step()
    for m in range(members):
        alone = [p[m].clone() for p in start]
        opt1 = Muon(alone, lr=2e-3, weight_decay=0.5, ns_dtype=torch.float32)
        for gs in grads:
            for p, g in zip(alone, gs):
                p.grad = g[m].clone()
            opt1.step()
        for p_st, p_al in zip(stacked, alone):
            torch.testing.assert_close(p_st[m], p_al, atol=1e-6, rtol=1e-5)
    assert lr_scale(torch.Size([members, 64, 256])) == lr_scale(torch.Size([64, 256])) == pytest.approx(0.2 * 16)


def test_state_dicts_of_torch_muon_load_into_ours_and_continue_the_same():
    shape = (64, 256)
    p0 = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    gs = [torch.randn(shape, generator=torch.Generator().manual_seed(t)) for t in range(4)]
    a, b = p0.clone(), p0.clone()
    ref = torch.optim.Muon([b], lr=1e-3, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for g in gs[:2]:
        b.grad = g.clone()
        ref.step()
    a.copy_(b)
    ours = Muon([a], lr=1e-3, weight_decay=0.1, ns_dtype=torch.bfloat16)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # a loaded state shares tensors with its source
    for g in gs[2:]:
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.equal(a, b)
    assert set(ours.state_dict()["param_groups"][0]) == set(ref.state_dict()["param_groups"][0])


def test_ns_precision_auto_is_bf16_on_cuda_and_follows_the_cpu_kind(monkeypatch):
    import modicl.runtime as rt

    assert resolve_ns_dtype("auto", torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: False)
    assert resolve_ns_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: True)
    assert resolve_ns_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_ns_dtype("fp32", torch.device("cuda")) == torch.float32
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        resolve_ns_dtype("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="stacks"):
        Muon([torch.zeros(3)])
