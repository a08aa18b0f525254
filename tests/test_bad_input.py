"""Bad input and hostile files: impossible values, folders that are not runs, runs owned by another
process, failed writes, closed pipes. Each ends in one line and an exit code, and changes nothing it
should not."""

import dataclasses
import json
import os
import resource
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config

from modicl.cli import main
from modicl.config import ConfigError, ModelConfig, validate
from modicl.presets import preset
from modicl.runlock import lock_run
from modicl.training import check_stream_device, train

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
    "4",
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


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "args, field",
    [
        (["--seed", "-1"], "seed = -1"),
        (["--seed", str(2**64)], "seed = 18446744073709551616"),
        (["--task.split-seed", "-1"], "task.split_seed = -1"),
        (["--train.beta2", "1.0"], "train.beta2 = 1.0"),
        (["--train.beta1", "1.5"], "train.beta1 = 1.5"),
        (["--train.eps", "-1e-8"], "train.eps = -1e-08"),
        (["--train.weight-decay", "nan"], "train.weight_decay = nan"),
        (["--train.lr", "inf"], "train.lr = inf"),
        (["--train.device", "mps"], "train.device = 'mps'"),
        (["--train.device", "xpu"], "train.device = 'xpu'"),
        (["--train.device", "meta"], "train.device = 'meta'"),
        (["--train.threads", "-2"], "train.threads = -2"),
        (["--model.rope-theta", "inf"], "model.rope_theta = inf"),
    ],
)
def test_impossible_values_stop_in_one_line_naming_the_field_before_anything_is_written(tmp_path, capsys, args, field):
    out = tmp_path / "run"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 2
    assert field in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_eval_on_a_device_that_does_not_exist_here_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--device", "mps"]) == 2
    assert "'mps' is not supported" in _one_line(capsys.readouterr().err)


def test_a_sweep_point_with_a_bad_seed_is_refused_before_any_point_runs(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\npreset = "quick"\n[axes]\nseed = [1, -1]\n')
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 2
    assert "grid point seed=-1: seed = -1" in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_head_count_suggestions_are_all_valid():
    cfg = preset("quick")
    with pytest.raises(ConfigError, match=r"use n_heads in \[1, 5, 13\]"):
        validate(dataclasses.replace(cfg, model=ModelConfig(d_model=130, n_heads=4)))
    for h in (1, 5, 13):
        validate(dataclasses.replace(cfg, model=ModelConfig(d_model=130, n_heads=h)))


def test_task_vectors_that_cannot_be_arranged_leave_no_half_made_run(tmp_path):
    cfg = tiny_config()
    cfg = dataclasses.replace(
        cfg, task=dataclasses.replace(cfg.task, p=7, n_id=44), train=dataclasses.replace(cfg.train, batch_size=44)
    )
    validate(cfg)  # passes validation: only the rectangle search finds out
    with pytest.raises(ConfigError, match="could not place 11 disjoint rectangles"):
        train(cfg, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError):
        train(cfg, tmp_path / "empty", progress=False)
    assert list((tmp_path / "empty").iterdir()) == []


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_overwrite_of_a_run_that_another_process_trains_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    with lock_run(run):  # another trainer holds the run
        assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
    assert "being trained by another process" in _one_line(capsys.readouterr().err)
    assert _snapshot(run) == before


def test_a_folder_that_holds_no_run_is_never_trained_into(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "summary.json").write_text('{"my": "results"}')
    before = _snapshot(mine)
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert main(["train", *TINY, "--out", str(mine), *extra]) == 2
        assert "holds no modicl run" in _one_line(capsys.readouterr().err)
    assert _snapshot(mine) == before
    with pytest.raises(ConfigError, match="holds no modicl run"):  # the library refuses too
        train(tiny_config(), mine, progress=False)
    assert _snapshot(mine) == before


@pytest.mark.parametrize("out", [["--out", ""], ["--out="]])
def test_an_empty_out_path_is_an_error(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, *out]) == 2
    assert "empty path" in _one_line(capsys.readouterr().err)
    assert main(["sweep", "quick-phase-diagram", *out]) == 2
    assert "empty path" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_never_replaces_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "results.csv").write_text("my,table\n1,2\n")
    assert main(["sweep", "quick-phase-diagram", "--out", str(mine), "--no-progress"]) == 2
    assert "holds no modicl sweep" in _one_line(capsys.readouterr().err)
    assert _snapshot(mine) == {"results.csv": b"my,table\n1,2\n"}


def _limit_file_size(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE behaviour")
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "run"
    # the optimizer state of this model (≈ 100 kB) is over the limit; config, tasks and metrics are under it
    proc = subprocess.run(
        [sys.executable, "-m", "modicl", "train", *TINY, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(64 * 1024),
    )
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "File too large" in line and "checkpoints" in line, line
    assert not list(out.rglob("*.tmp"))


def _closed_pipe_run(args, stream, timeout=300):
    """Run ``modicl ARGS`` with ``stream`` (stdout or stderr) writing into a pipe whose reader has gone, as
    ``modicl … | head -1`` (stdout) or ``modicl … 2>&1 | head -1`` (both) leave it; the other stream is read."""
    read, write = os.pipe()
    os.close(read)
    other = {"stdout": "stderr", "stderr": "stdout"}[stream]
    try:
        return subprocess.run(
            [sys.executable, "-m", "modicl", *args],
            **{stream: write, other: subprocess.PIPE},
            text=True,
            timeout=timeout,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_closed_pipe_on_either_stream_lets_train_finish_its_run(tmp_path, stream):
    # with the progress report on (it writes its last line to stderr when training ends)
    args = [a for a in TINY if a != "--no-progress"]
    proc = _closed_pipe_run(["train", *args, "--out", str(tmp_path / "run")], stream)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and (tmp_path / "run" / "plots" / "learning_curves.png").stat().st_size > 0


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_closed_pipe_on_either_stream_lets_a_sweep_finish_every_point(tmp_path, stream):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "pipe"\npreset = "quick"\n[set]\n'
        + "".join(
            f'"{k}" = {v}\n'
            for k, v in {
                "task.p": 5,
                "task.n_id": 4,
                "task.n_ctx": 4,
                "model.d_model": 32,
                "model.n_layers": 1,
                "model.n_heads": 2,
                "train.batch_size": 16,
                "train.steps": 4,
                "train.eval_every": 2,
                "train.eval_sequences": 16,
                "train.dtype": '"fp32"',
                "train.warmup_steps": 1,
            }.items()
        )
        + "[axes]\nseed = [1, 2, 3]\n"
    )
    proc = _closed_pipe_run(
        ["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--workers", "2", "--no-ensemble"], stream
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "sweep" / "results.csv")) == 3
    assert set(pd.read_csv(tmp_path / "sweep" / "index.csv")["status"]) == {"done"}


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_closed_pipe_on_either_stream_lets_eval_and_analyze_write_everything(tmp_path, stream):
    run = tmp_path / "run"
    train(tiny_config(steps=4, eval_every=2), run, progress=False)
    proc = _closed_pipe_run(["eval", str(run), "--checkpoint", "last", "--sequences", "16"], stream)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert json.loads((run / "eval" / "last.json").read_text())["step"] == 4
    proc = _closed_pipe_run(["analyze", str(run), "--checkpoint", "last"], stream)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert (run / "analysis" / "analysis.json").exists()


def test_a_data_stream_stays_on_the_device_type_that_drew_it(tmp_path):
    cfg = tiny_config(steps=4, eval_every=2)
    run = tmp_path / "run"
    train(cfg, run, progress=False, stop_after=2)
    state_path = run / "checkpoints" / "last.state.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["generator_device"] == "cpu"
    check_stream_device(state, torch.device("cpu"))
    with pytest.raises(ConfigError, match="trained on cpu and its data stream cannot move to cuda.*--train.device cpu"):
        check_stream_device(state, torch.device("cuda"))
    legacy = {k: v for k, v in state.items() if k != "generator_device"}  # written before the device was recorded
    with pytest.raises(ConfigError, match="trained on cpu"):
        check_stream_device(legacy, torch.device("cuda"))
    cuda_like = {**legacy, "generator": torch.zeros(16, dtype=torch.uint8)}  # a Philox state
    with pytest.raises(ConfigError, match="trained on cuda"):
        check_stream_device(cuda_like, torch.device("cpu"))
    # a run whose stream was drawn on CUDA is refused on the CPU before anything changes
    torch.save({**state, "generator_device": "cuda"}, state_path)
    before = _snapshot(run)
    with pytest.raises(ConfigError, match="trained on cuda"):
        train(cfg, run, progress=False, resume=True)
    assert _snapshot(run) == before


def test_library_calls_leave_the_callers_process_as_they_found_it(tmp_path):
    code = f"""
import sys, json, matplotlib, torch
matplotlib.use("svg")
sys.path.insert(0, {str(os.path.dirname(__file__))!r})
import modicl.report.figures, modicl.analysis.registry, modicl.sweep.figures, modicl.analysis.figures
from modicl import allocator
from modicl.training import train
from modicl.analysis.registry import run_analyses
from conftest import tiny_config
torch.set_num_threads(2)
train(tiny_config(steps=4, eval_every=2, threads=1), {str(tmp_path / "run")!r}, progress=False)
run_analyses({str(tmp_path / "run")!r}, "last", what=("attention", "kshot"), device="cpu")
import matplotlib.pyplot
print(json.dumps([matplotlib.get_backend(), torch.get_num_threads(), allocator._done, matplotlib.pyplot.get_fignums()]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["svg", 2, False, []]
    assert (tmp_path / "run" / "plots" / "learning_curves.png").exists()


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    """A tiny run with its plots and a complete analysis of its last checkpoint."""
    from modicl.analysis.registry import run_analyses

    run = tmp_path_factory.mktemp("analysed") / "run"
    train(tiny_config(steps=4, eval_every=2), run, progress=False)
    run_analyses(run, "last", device="cpu")
    return run


def _fail_on_second_figure(monkeypatch, exc):
    import matplotlib.figure

    calls = {"n": 0}
    real = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            real(self, fname, *a, **k)  # half a file on disk, as a full disk leaves it
            raise exc
        return real(self, fname, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "disk-full"]
)
def test_an_interrupted_or_failed_analyze_leaves_the_previous_analysis_as_it_was(analysed_run, monkeypatch, exc):
    from modicl.analysis.registry import run_analyses

    before = _snapshot(analysed_run / "analysis")
    _fail_on_second_figure(monkeypatch, exc)
    with pytest.raises(type(exc)) as err:
        run_analyses(analysed_run, "best_ood", device="cpu")
    if isinstance(exc, OSError):
        assert err.value.filename and err.value.filename.endswith((".png", ".pdf"))  # the message names the file
    assert _snapshot(analysed_run / "analysis") == before
    assert not [p for p in analysed_run.rglob("*") if ".staging-" in p.name or p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "disk-full"]
)
def test_an_interrupted_or_failed_plot_leaves_the_previous_figures_and_never_a_partial_one(
    analysed_run, monkeypatch, exc, capsys
):
    before = _snapshot(analysed_run / "plots")
    _fail_on_second_figure(monkeypatch, exc)
    if isinstance(exc, KeyboardInterrupt):
        assert main(["plot", str(analysed_run)]) == 130
    else:
        assert main(["plot", str(analysed_run)]) == 1
        assert "plots" in _one_line(capsys.readouterr().err)  # names the figure it could not write
    assert _snapshot(analysed_run / "plots") == before
    assert all(p.stat().st_size > 0 for p in analysed_run.rglob("*.png"))


@pytest.mark.parametrize("bad", [None, "seven", [5]])
def test_a_config_json_with_a_wrong_type_is_one_line_naming_file_and_field(analysed_run, tmp_path, capsys, bad):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(analysed_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"]["p"] = bad
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["plot", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "config.json" in line and "task.p" in line, line
    assert _snapshot(run) == before and not (run / "plots").joinpath("x").exists()


def test_a_checkpoint_whose_task_lists_overlap_is_refused(analysed_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(analysed_run, run)
    side = run / "checkpoints" / "last.json"
    d = json.loads(side.read_text())
    d["tasks"]["ood_tasks"][0] = d["tasks"]["id_tasks"][0]  # an o.o.d. task that is also a pre-training task
    side.write_text(json.dumps(d))
    assert main(["eval", str(run), "--checkpoint", "last", "--sequences", "8"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "last.json" in line and "id_tasks ∩ ood_tasks" in line, line


def test_a_torn_metrics_line_is_reported_when_it_is_dropped(analysed_run, tmp_path):
    from modicl.rundir import read_metrics

    run = tmp_path / "r"
    (run).mkdir()
    rows = (analysed_run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(rows[:-1]) + "\n" + rows[-1][: len(rows[-1]) // 2])
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line 3 is not a complete metrics row"):
        assert len(read_metrics(run)) == len(rows) - 1


def test_overwrite_lists_a_users_own_files_in_a_run_folder_and_deletes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    (run / "my_notes.txt").write_text("mine")
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "my_notes.txt" in line and "move them out" in line, line
    assert _snapshot(run) == before


def test_tyro_errors_and_a_nan_lr_are_one_line(capsys, tmp_path):
    assert main(["bench", "--dtypes", "fp64"]) == 2
    assert "invalid choice 'fp64' for argument '--dtypes'" in _one_line(capsys.readouterr().err)
    assert main(["analyze", str(tmp_path), "--what", "nosuch"]) == 2
    assert "'nosuch'" in _one_line(capsys.readouterr().err)
    assert main(["train", *TINY, "--train.lr", "nan", "--out", str(tmp_path / "r")]) == 2
    assert "finite" in _one_line(capsys.readouterr().err)
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "run directory" in line and "results.csv" not in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("box", ["unicode", "ascii"])
def test_a_tyro_box_becomes_its_message_in_either_drawing(box):
    # tyro draws its error box in Unicode on a UTF-8 stdout and in ASCII otherwise (a C locale, CI)
    from modicl.cli.args import _tyro_message

    h, v, tl, tr, bl, br = ("─", "│", "╭", "╮", "╰", "╯") if box == "unicode" else ("-", "|", "+", "+", "+", "+")
    text = "\n".join(
        [
            f"{tl}{h} Parsing error {h * 10}{tr}",
            f"{v} invalid choice 'x' for argument '--what'. {v}",
            f"{v} {h * 30} {v}",
            f"{v} For full helptext, run modicl analyze --help {v}",
            f"{bl}{h * 40}{br}",
        ]
    )
    assert (
        _tyro_message(text, "modicl analyze") == "invalid choice 'x' for argument '--what'. (see modicl analyze --help)"
    )


def test_the_saved_stream_device_is_read_by_one_rule_for_runs_and_ensembles():
    import torch

    from modicl.rundir import stream_device

    cpu = torch.Generator().get_state()
    assert stream_device({"generator": cpu}) == "cpu"  # a checkpoint from before generator_device was recorded
    assert stream_device({"generator": torch.zeros(16, dtype=torch.uint8)}) == "cuda"  # a Philox state
    assert stream_device({"generator": cpu, "generator_device": "cuda"}) == "cuda"  # recorded wins
