"""Checkpoint history (train.keep_checkpoints, step:N) and branching a run from a kept checkpoint."""

import dataclasses
import json

import pytest
import torch
from conftest import tiny_config

from modicl.branch import branch_run, split_ref
from modicl.cli import main
from modicl.config import ConfigError, validate
from modicl.history import ScheduleError, file_stem, keeps, kept_steps, parse_schedule, ref_of
from modicl.rundir import CheckpointError, load_checkpoint, read_metrics
from modicl.sweep import point_hash
from modicl.training import train


def _kept(text: str, steps: int, eval_every: int) -> list[int]:
    sched = parse_schedule(text, eval_every)
    evals = sorted({*range(0, steps + 1, eval_every), steps})
    return [s for s in evals if keeps(s, eval_every, sched)]


def test_log_spaced_history_keeps_the_first_evaluation_after_each_power_of_two():
    # eval every 250 up to 4000: 2^0…2^7 fall in (0, 250], 2^8 in (250, 500], 2^9 in (500, 750],
    # 2^10 in (1000, 1250], 2^11 in (2000, 2250]; 2^12 = 4096 is past the end.
    assert _kept("log", 4000, 250) == [0, 250, 500, 750, 1250, 2250]
    assert _kept("every:1000", 4000, 250) == [0, 1000, 2000, 3000, 4000]  # step 0 is a multiple too
    assert _kept("log+every:1000", 4000, 250) == [0, 250, 500, 750, 1000, 1250, 2000, 2250, 3000, 4000]
    assert _kept("all", 1000, 250) == [0, 250, 500, 750, 1000]
    assert _kept("none", 1000, 250) == []
    # a final step off the evaluation grid: 4096 lies in (4000, 4100]
    assert _kept("log", 4100, 250)[-1] == 4100


@pytest.mark.parametrize(
    "text, hint",
    [
        ("every:300", "every:250"),
        ("logs", "log+every:N"),
        ("every:0", "none, all"),
        ("log+log", "none, all"),
        ("", "none, all"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_with_what_to_write(text, hint):
    with pytest.raises(ScheduleError, match=hint.replace("+", r"\+")):
        parse_schedule(text, 250)
    with pytest.raises(ConfigError, match="train.keep_checkpoints"):
        validate(tiny_config(keep_checkpoints=text, eval_every=250, steps=1000))


def test_checkpoint_names_round_trip_and_a_bad_name_is_refused():
    assert file_stem("step:500") == file_stem("step-500") == "step-0000500"
    assert ref_of("step-0000500") == "step:500" and ref_of("best_ood") == "best_ood"
    assert file_stem("last") == "last"
    with pytest.raises(ScheduleError, match="last, best_ood or step:N"):
        file_stem("step500")
    assert split_ref("runs/a@step:40") == (split_ref("runs/a")[0], "step:40") and split_ref("runs/a")[1] == "last"


def test_the_schedule_changes_no_run_name_and_no_trajectory(tmp_path):
    plain, kept = tiny_config(), tiny_config(keep_checkpoints="all")
    assert point_hash(plain) == point_hash(kept)
    train(plain, tmp_path / "plain", progress=False)
    train(kept, tmp_path / "kept", progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "kept")) == strip(read_metrics(tmp_path / "plain"))
    assert kept_steps(tmp_path / "kept" / "checkpoints") == [0, 20, 40, 60]
    assert kept_steps(tmp_path / "plain" / "checkpoints") == []
    # a kept checkpoint holds the weights of its step: step:60 is the final model, step:20 is not
    last, at60, at20 = (load_checkpoint(tmp_path / "kept", n) for n in ("last", "step:60", "step:20"))
    assert at20.step == 20 and at60.step == 60
    sd = last.model.state_dict()
    assert all(torch.equal(sd[k], at60.model.state_dict()[k]) for k in sd)
    assert not all(torch.equal(sd[k], at20.model.state_dict()[k]) for k in sd)
    with pytest.raises(CheckpointError, match=r"available: best_ood, last, step:0, step:20, step:40, step:60"):
        load_checkpoint(tmp_path / "kept", "step:30")


def test_a_branch_without_changes_continues_its_parent_exactly(tmp_path):
    cfg = tiny_config(keep_checkpoints="all")
    train(cfg, tmp_path / "parent", progress=False)
    record = branch_run(tmp_path / "parent", "step:20", tmp_path / "branch", cfg)
    assert record["step"] == 20 and record["changed"] == {}
    train(cfg, tmp_path / "branch", progress=False, resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "branch")) == strip(read_metrics(tmp_path / "parent"))
    a, b = load_checkpoint(tmp_path / "parent"), load_checkpoint(tmp_path / "branch")
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())
    summary = json.loads((tmp_path / "branch" / "summary.json").read_text())
    assert summary["parent"]["checkpoint"] == "step:20" and summary["parent"]["parent"] == str(
        (tmp_path / "parent").resolve()
    )


def test_a_branch_takes_its_new_settings_and_refuses_other_changes(tmp_path):
    cfg = tiny_config(keep_checkpoints="log")
    train(cfg, tmp_path / "parent", progress=False)
    new = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-3, beta2=0.9, steps=80))
    record = branch_run(tmp_path / "parent", "step:20", tmp_path / "b", new)
    assert record["changed"] == {"train.lr": [3e-3, 1e-3], "train.beta2": [0.98, 0.9], "train.steps": [60, 80]}
    groups = torch.load(tmp_path / "b" / "checkpoints" / "last.state.pt", weights_only=False)["optimizer"][
        "param_groups"
    ]
    assert {g["betas"] for g in groups} == {(0.9, 0.9)}  # not the parent's 0.98 that the saved state carried
    train(new, tmp_path / "b", progress=False, resume=True)
    rows = read_metrics(tmp_path / "b")
    assert [r["step"] for r in rows] == [0, 20, 40, 60, 80]
    assert rows[:2] == read_metrics(tmp_path / "parent")[:2]  # the parent's history up to the branch point
    assert rows[2]["lr"] != read_metrics(tmp_path / "parent")[2]["lr"]
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=64))
    with pytest.raises(ConfigError, match="model.d_model"):
        branch_run(tmp_path / "parent", "step:20", tmp_path / "c", bad)
    with pytest.raises(ConfigError, match="does not go past the branch point"):
        branch_run(
            tmp_path / "parent",
            "step:40",
            tmp_path / "c",
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=40)),
        )
    with pytest.raises(ConfigError, match="keeps no optimizer state"):
        branch_run(tmp_path / "parent", "best_ood", tmp_path / "c", cfg)
    with pytest.raises(CheckpointError, match="no checkpoint 'step:60'"):  # log keeps 0, 20, 40 only
        branch_run(tmp_path / "parent", "step:60", tmp_path / "c", cfg)
    assert not (tmp_path / "c").exists()


TINY = [
    "--task.p",
    "5",
    "--task.n-id",
    "4",
    "--task.n-ctx",
    "4",
    "--model.d-model",
    "32",
    "--model.n-layers",
    "1",
    "--model.n-heads",
    "2",
    "--train.batch-size",
    "16",
    "--train.steps",
    "8",
    "--train.eval-every",
    "2",
    "--train.eval-sequences",
    "16",
    "--train.dtype",
    "fp32",
    "--train.warmup-steps",
    "1",
    "--no-progress",
]


def test_the_command_line_keeps_evaluates_and_branches_history(tmp_path, capsys):
    run, branch = tmp_path / "run", tmp_path / "branch"
    assert main(["train", *TINY, "--train.keep-checkpoints", "every:4", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--checkpoint", "step:4", "--sequences", "16"]) == 0
    assert json.loads((run / "eval" / "step-0000004.json").read_text())["step"] == 4
    capsys.readouterr()
    assert main(["train", "--from", f"{run}@step:4", "--out", str(branch), "--train.lr", "1e-3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"branch of {run} at step 4 (step:4); changed: train.lr 0.002 → 0.001" in out
    assert json.loads((branch / "config.json").read_text())["task"]["p"] == 5  # the parent's config, not a preset's
    assert main(["train", "--from", f"{run}@step:4", "--preset", "quick", "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "--from", f"{run}@step:4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "drop --preset" in err and "--from needs --out" in err


def test_analyses_of_a_kept_step_sit_apart_and_a_folder_never_mixes_two_checkpoints(tmp_path):
    from modicl.analysis.registry import run_analyses

    cfg = tiny_config(keep_checkpoints="all", steps=40)
    train(cfg, tmp_path / "r", progress=False)
    res = run_analyses(tmp_path / "r", "step:20", what=("attention",), device="cpu")
    assert res["step"] == 20 and (tmp_path / "r" / "analysis" / "step-0000020" / "analysis.json").exists()
    # an earlier analysis of another checkpoint in RUN_DIR/analysis: its files go before `last` writes there
    shared = tmp_path / "r" / "analysis"
    (shared / "analysis.json").write_text(json.dumps({"step": 0, "checkpoint": "best_ood"}))
    (shared / "pca_best_head.png").write_bytes(b"stale")
    run_analyses(tmp_path / "r", "last", what=("attention",), device="cpu")
    assert not (shared / "pca_best_head.png").exists()
    assert json.loads((shared / "analysis.json").read_text())["step"] == 40
    assert (shared / "step-0000020" / "analysis.json").exists()  # other checkpoints' folders stay


def test_a_checkpoint_rewritten_while_a_branch_reads_it_is_refused(tmp_path):
    import shutil

    cfg = tiny_config(keep_checkpoints="all")
    train(cfg, tmp_path / "parent", progress=False)
    ckpts = tmp_path / "parent" / "checkpoints"
    # as if the parent replaced the weights between the sidecar (step 20) and the weights (step 40) being read
    shutil.copyfile(ckpts / "step-0000040.safetensors", ckpts / "step-0000020.safetensors")
    with pytest.raises(CheckpointError, match="rewritten while it was read"):
        branch_run(tmp_path / "parent", "step:20", tmp_path / "b", cfg)
