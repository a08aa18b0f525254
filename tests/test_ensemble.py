import dataclasses
import json

import pytest
import torch
from conftest import tiny_config

from modicl.config import ConfigError
from modicl.ensemble import ensemble_key, train_ensemble
from modicl.rundir import load_checkpoint
from modicl.sweep import SweepSpec, run_sweep
from modicl.training import train


def _members(**train_overrides):
    base = tiny_config(steps=40, eval_every=20, **train_overrides)
    return [
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, seed=2, task=dataclasses.replace(base.task, n_id=8)),
        dataclasses.replace(base, seed=3, task=dataclasses.replace(base.task, alpha=0.6, rule="random", n_id=8)),
    ]


def _rows(d):
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a, b, exact):
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [0, 20, 40]
    for x, y in zip(ra, rb):
        for s in ("id_train", "id_test", "ood_train", "ood_test"):
            for k in ("acc", "acc_last", "loss"):
                if exact:
                    assert x[s][k] == y[s][k], (s, k)
                else:
                    assert x[s][k] == pytest.approx(y[s][k], abs=1e-5)
    assert (a / "tasks.json").read_text() == (b / "tasks.json").read_text()
    wa, wb = load_checkpoint(a, "last").model.state_dict(), load_checkpoint(b, "last").model.state_dict()
    for name in wa:
        if exact:
            assert torch.equal(wa[name], wb[name]), name
        else:
            torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["loop", "vmap"])
@pytest.mark.parametrize(
    "schedule",
    [
        {},
        {"weight_decay_step": 25, "late_weight_decay": 3.0},
        {"grokfast_lambda": 2.0},
        {"optimizer": "muon", "muon_ns_dtype": "fp32"},
    ],
    ids=["wd", "wd-step", "grokfast", "muon"],
)
def test_a_member_trained_in_an_ensemble_matches_the_same_config_trained_alone(backend, schedule, tmp_path):
    cfgs = _members(**schedule)
    for i, c in enumerate(cfgs):
        train(c, tmp_path / f"single{i}", progress=False)
    errors = train_ensemble(cfgs, [tmp_path / f"ens{i}" for i in range(3)], backend=backend, progress=False)
    assert errors == [None, None, None]
    for i in range(3):
        # loop: the same kernels in the same order, bit for bit; vmap: batched matmuls, fp32 rounding
        _assert_same_run(tmp_path / f"single{i}", tmp_path / f"ens{i}", exact=backend == "loop")
        assert json.loads((tmp_path / f"ens{i}" / "summary.json").read_text())["steps"] == 40


def test_an_interrupted_vmap_ensemble_resumes_to_the_uninterrupted_result(tmp_path):
    cfgs = _members()
    dirs = [tmp_path / f"a{i}" for i in range(3)]
    train_ensemble(cfgs, dirs, backend="vmap", progress=False)
    stopped = [tmp_path / f"b{i}" for i in range(3)]
    train_ensemble(cfgs, stopped, backend="vmap", progress=False, stop_after=20)
    assert not (stopped[0] / "summary.json").exists()
    train_ensemble(cfgs, stopped, backend="vmap", progress=False, resume=True)
    for a, b in zip(dirs, stopped):
        _assert_same_run(a, b, exact=False)


def test_members_that_differ_beyond_their_data_are_refused(tmp_path):
    a, b = _members()[:2]
    assert ensemble_key(a) == ensemble_key(b)
    c = dataclasses.replace(b, train=dataclasses.replace(b.train, lr=1e-2))
    assert ensemble_key(a) != ensemble_key(c)
    with pytest.raises(ConfigError, match="differ in more than their data"):
        train_ensemble([a, c], [tmp_path / "a", tmp_path / "c"], progress=False)


def test_sweep_trains_compatible_points_as_one_ensemble_and_relaunch_skips_them(tmp_path, monkeypatch):
    import modicl.ensemble

    calls = []
    real = modicl.ensemble.train_ensemble
    monkeypatch.setattr(
        modicl.ensemble, "train_ensemble", lambda cfgs, dirs, **kw: calls.append(len(cfgs)) or real(cfgs, dirs, **kw)
    )
    spec = SweepSpec(
        "e", base=tiny_config(steps=20, eval_every=10), axes={"n_id": [4, 8], "seed": [1, 2], "d_model": [16, 32]}
    )
    report = run_sweep(spec, tmp_path / "s", progress=False)
    assert calls == [4, 4] and len(report.finished) == 8  # one ensemble per width
    again = run_sweep(spec, tmp_path / "s", progress=False)
    assert calls == [4, 4] and len(again.skipped) == 8


def test_an_ensemble_that_runs_out_of_memory_trains_its_members_one_by_one(tmp_path, monkeypatch):
    import modicl.ensemble

    calls = []

    def oom(cfgs, dirs, **kw):
        calls.append(len(cfgs))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 180.00 GiB")

    monkeypatch.setattr(modicl.ensemble, "train_ensemble", oom)
    spec = SweepSpec("e", base=tiny_config(steps=20, eval_every=10), axes={"seed": [1, 2]})
    with pytest.warns(UserWarning, match="ensemble of 2 ran out of memory"):
        report = run_sweep(spec, tmp_path / "s", progress=False)
    assert calls == [2] and len(report.finished) == 2 and not report.failed
    alone = train(dataclasses.replace(tiny_config(steps=20, eval_every=10), seed=2), tmp_path / "alone", progress=False)
    done = [json.loads((d / "summary.json").read_text()) for d in sorted((tmp_path / "s" / "runs").iterdir())]
    assert alone["final"] in [s["final"] for s in done]


def test_a_member_checkpointed_on_another_device_type_fails_alone_with_a_clear_message(tmp_path, monkeypatch):
    import modicl.rundir
    import modicl.training as train_mod

    cfgs = _members()[:2]
    dirs = [tmp_path / "a", tmp_path / "b"]
    train_ensemble(cfgs, dirs, backend="loop", progress=False, stop_after=20)
    real = modicl.rundir.load_state

    def as_if_cuda(run_dir, name="last"):  # a CUDA generator's state is 16 bytes, and the device is recorded
        st = real(run_dir, name)
        return {**st, "generator": st["generator"][:16], "generator_device": "cuda"} if run_dir == dirs[1] else st

    monkeypatch.setattr(modicl.rundir, "load_state", as_if_cuda)
    monkeypatch.setattr(train_mod, "load_state", as_if_cuda)
    errors = train_ensemble(cfgs, dirs, backend="loop", progress=False)
    assert errors[0] is None and (dirs[0] / "summary.json").exists()
    assert errors[1].startswith(f"ConfigError: {dirs[1]} was trained on cuda and its data stream cannot move to cpu")


def test_a_diverging_vmap_member_stops_alone_and_the_others_match_their_runs_alone(tmp_path, monkeypatch):
    from modicl.steps import VmapStep

    cfgs = _members()[:2]
    train(cfgs[0], tmp_path / "alone", progress=False)
    real = VmapStep.__call__
    calls = []

    def second_member_diverges(self, batches, lr, weight_decay=None):
        losses = real(self, batches, lr, weight_decay)
        calls.append(len(batches))
        if len(calls) == 13:  # optimizer step 13 (1-based) of member 1
            losses = losses.clone()
            losses[1] = float("nan")
        return losses

    monkeypatch.setattr(VmapStep, "__call__", second_member_diverges)
    errors = train_ensemble(cfgs, [tmp_path / "a", tmp_path / "b"], backend="vmap", progress=False)
    assert errors[0] is None
    assert errors[1].startswith("TrainingDiverged: loss became non-finite at step 13;") and "keeps step 0" in errors[1]
    assert "lower train.lr" in errors[1] and "fp32" not in errors[1]  # the run is fp32 already: no such hint
    assert calls[:20] == [2] * 20 and calls[20:] == [1] * 20  # checked at the evaluation of step 20; one goes on
    _assert_same_run(tmp_path / "a", tmp_path / "alone", exact=False)
