"""The compile path of a training step: a compiler failure, or a compiled program whose first loss and
gradients differ from eager, falls back to eager and says so; any other error propagates; the compile mode
is an execution setting that leaves config hashes unchanged."""

import contextlib
import dataclasses
import functools
import math

import pytest
import torch

from modicl.compiling import is_compiler_error, relative_difference
from modicl.config import ModelConfig, RunConfig, TrainConfig
from modicl.hashing import config_hash
from modicl.model import Transformer
from modicl.steps import TrainStep, build_optimizer

_COMPILE = torch.compile


@pytest.fixture(autouse=True)
def _unchecked_step(monkeypatch):
    """The compiled step as production runs it: without the test suite's shape-check wrappers (conftest)
    around the model, the loss and the data helpers it calls, which torch.compile would count as graph breaks."""
    from conftest import without_shape_checks

    import modicl.model
    import modicl.steps

    without_shape_checks(monkeypatch, modicl.model, modicl.steps)


def _step(compile_on: bool) -> tuple[TrainStep, torch.Tensor]:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2), vocab_size=7, max_len=23)
    opt = build_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"))
    tokens = torch.randint(0, 7, (8, 24), generator=torch.Generator().manual_seed(1))
    return TrainStep(model, opt, contextlib.nullcontext(), compile_on, n_var=2), tokens


def _with_backend(monkeypatch, backend) -> None:
    monkeypatch.setattr(torch, "compile", functools.partial(_COMPILE, backend=backend))
    torch._dynamo.reset()


def test_a_compiler_failure_falls_back_to_eager_and_reports_what_ran(monkeypatch):
    def broken_backend(gm, example_inputs):
        raise NotImplementedError("no kernel for this op")

    _with_backend(monkeypatch, broken_backend)
    eager, tokens = _step(False)
    step, _ = _step(True)
    with pytest.warns(UserWarning, match="torch.compile failed .*BackendCompilerFailed"):
        loss = step(tokens)
    assert loss.item() == eager(tokens).item()  # the failed attempt left no gradient or optimizer trace
    assert step.compiled is False and "no kernel for this op" in step.compile_error
    assert step(tokens).item() == eager(tokens).item()  # and it stays eager


def test_an_out_of_memory_error_inside_the_compiler_propagates(monkeypatch):
    def oom_backend(gm, example_inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 180.00 GiB")

    _with_backend(monkeypatch, oom_backend)
    step, tokens = _step(True)
    with pytest.raises(Exception) as info:
        step(tokens)
    assert not is_compiler_error(info.value) and "180.00 GiB" in str(info.value)
    assert step.compiled is True and step.compile_error is None


def test_a_bug_in_the_compiled_program_propagates_instead_of_running_eagerly(monkeypatch):
    _with_backend(monkeypatch, "eager")
    step, tokens = _step(True)
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        step(torch.cat([tokens, tokens], dim=1))
    assert step.compiled is True and step.compile_error is None


def test_a_compiled_step_counts_no_graph_breaks_and_matches_eager(monkeypatch):
    _with_backend(monkeypatch, "aot_eager")
    eager, tokens = _step(False)
    step, _ = _step(True)
    for _ in range(2):
        assert step(tokens).item() == pytest.approx(eager(tokens).item(), rel=1e-5)
    assert step.compiled is True and step.graph_breaks == 0


def test_compile_mode_is_an_execution_setting_that_keeps_config_hashes():
    from modicl.sweep import point_hash

    cfg = RunConfig()
    assert cfg.train.compile_mode == "default"
    overhead = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile_mode="reduce-overhead"))
    assert config_hash(cfg) == "9ccaba1676a5"  # the hash of the paper preset before the field existed
    assert config_hash(overhead) != config_hash(cfg) and point_hash(overhead) == point_hash(cfg)


def _vmap_losses(tmp_path, compile_setting, steps=3):
    from conftest import tiny_config

    from modicl.steps import VmapStep
    from modicl.training import RunState

    cfg = tiny_config(compile=compile_setting)
    runs = [
        RunState(
            dataclasses.replace(cfg, seed=s),
            tmp_path / f"{compile_setting}{s}",
            resume=False,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        for s in (1, 2, 3)
    ]
    step = VmapStep(runs)
    out = [step([r.batch(0) for r in runs], 1e-3) for _ in range(steps)]
    for r in runs:
        r.close()
    return step, torch.stack(out)


def test_a_compiled_vmap_ensemble_step_is_one_graph_and_matches_the_eager_one(tmp_path, monkeypatch):
    from modicl.compiling import graph_break_count

    eager_step, eager = _vmap_losses(tmp_path, "off")
    _with_backend(monkeypatch, "aot_eager")
    before = graph_break_count()
    step, compiled = _vmap_losses(tmp_path, "on")
    assert step.compiled is True and step.compile_error is None and graph_break_count() == before
    assert eager.shape == (3, 3) and eager_step.compiled is False
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def _wrong_backend(gm, example_inputs):
    """A compiler that compiles without error but returns every floating-point output doubled (so the loss
    and, through autograd, the gradients are wrong): what a miscompiled kernel looks like to a step."""

    def run(*args):
        out = gm(*args)
        return type(out)(o * 2 if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out)

    return run


def test_relative_difference_is_one_l2_ratio_over_the_whole_set_and_inf_for_what_cannot_be_compared():
    t = torch.tensor
    assert relative_difference([t([3.0, 4.0])], [t([3.0, 4.5])]) == pytest.approx(0.5 / 5)  # ‖(0, .5)‖ / ‖(3, 4)‖
    # one norm over both tensors: ‖(0, 0, .5)‖ / ‖(3, 4, 2)‖ = 0.5 / √29, not the 0.25 of the second alone
    assert relative_difference([t([3.0, 4.0]), t(2.0)], [t([3.0, 4.0]), t(2.5)]) == pytest.approx(0.5 / math.sqrt(29))
    assert relative_difference([t([0.0, 0.0])], [t([0.0, 1e-3])]) == pytest.approx(1e-3)  # all-zero eager: absolute
    assert relative_difference([None, t(1.0)], [None, t(1.0)]) == 0.0
    assert relative_difference([None], [t(0.0)]) == math.inf  # a gradient only one side computed
    assert relative_difference([t([1.0])], [t([float("nan")])]) == math.inf
    with pytest.raises(ValueError, match="2 eager tensors against 1"):
        relative_difference([t(1.0), t(1.0)], [t(1.0)])


def test_a_compiler_that_computes_wrong_numbers_is_caught_on_the_first_step_and_training_stays_eager(monkeypatch):
    _with_backend(monkeypatch, _wrong_backend)
    eager, tokens = _step(False)
    step, _ = _step(True)
    with pytest.warns(UserWarning, match="computes wrong numbers"):
        loss = step(tokens)
    assert step.compiled is False and "differ from eager by" in step.compile_error
    assert loss.item() == eager(tokens).item()  # the step ran on the eager loss and gradients
    for _ in range(2):
        assert step(tokens).item() == eager(tokens).item()
    for a, b in zip(step.model.parameters(), eager.model.parameters(), strict=True):
        assert torch.equal(a, b)  # bit for bit the eager run


def test_a_compiled_ensemble_that_computes_wrong_numbers_falls_back_to_the_eager_ensemble(tmp_path, monkeypatch):
    _, eager = _vmap_losses(tmp_path, "off")
    _with_backend(monkeypatch, _wrong_backend)
    with pytest.warns(UserWarning, match="computes wrong numbers on the vmap ensemble"):
        step, checked = _vmap_losses(tmp_path, "on")
    assert step.compiled is False and "differ from eager by" in step.compile_error
    torch.testing.assert_close(checked, eager, rtol=0, atol=0)
