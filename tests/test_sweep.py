import dataclasses
import json
import os
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from conftest import tiny_config

import modicl.training
from modicl.cli import main
from modicl.config import ConfigError
from modicl.phases import PHASES
from modicl.presets import preset
from modicl.sweep import SweepSpec, expand, load_spec, parse_assignment, point_hash, point_status, run_sweep
from modicl.sweep.jobs import Job, job_label


def _spec(**axes):
    base = tiny_config(steps=20, eval_every=10)
    return SweepSpec("t", base=base, axes=axes or {"n_id": [4, 8], "seed": [1, 2]})


def _count_trains(monkeypatch, fail_seed=None, interrupt_after=None):
    calls = []
    real = modicl.training.train

    def counting(cfg, run_dir, **kw):
        if interrupt_after is not None and len(calls) == interrupt_after:
            raise KeyboardInterrupt
        calls.append((cfg.task.n_id, cfg.seed, kw.get("resume", False)))
        if cfg.seed == fail_seed:
            raise RuntimeError("injected failure\nsecond line")
        return real(cfg, run_dir, **kw)

    monkeypatch.setattr(modicl.training, "train", counting)
    return calls


def test_expand_is_the_grid_product_in_axis_order_with_machine_independent_hashes():
    pts = expand(_spec(n_id=[4, 8], alpha=[0.6, 0.8], seed=[1]))
    assert [(p.axes["task.n_id"], p.axes["task.alpha"]) for p in pts] == [(4, 0.6), (4, 0.8), (8, 0.6), (8, 0.8)]
    assert [p.config.task.n_id for p in pts] == [4, 4, 8, 8]
    assert len({p.hash for p in pts}) == 4
    cfg = pts[0].config
    other_machine = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, threads=7, device="cuda", compile="on")
    )
    assert point_hash(other_machine) == pts[0].hash
    assert point_hash(dataclasses.replace(cfg, seed=99)) != pts[0].hash


def test_zip_axes_vary_together_as_one_more_axis():
    spec = dataclasses.replace(_spec(seed=[1, 2]), zip={"n_id": [4, 8, 12], "batch_size": [16, 16, 24]})
    got = [(p.config.seed, p.config.task.n_id, p.config.train.batch_size) for p in expand(spec)]
    assert got == [(1, 4, 16), (1, 8, 16), (1, 12, 24), (2, 4, 16), (2, 8, 16), (2, 12, 24)]
    with pytest.raises(ConfigError, match="of one length"):
        expand(dataclasses.replace(spec, zip={"n_id": [4, 8], "batch_size": [16]}))
    with pytest.raises(ConfigError, match="both an axis and a zip axis"):
        expand(dataclasses.replace(spec, zip={"seed": [1], "batch_size": [16]}))


def test_a_fixed_value_on_an_axis_field_is_an_error_not_silently_overwritten():
    spec = dataclasses.replace(_spec(seed=[1, 2]), zip={"n_id": [4, 8], "batch_size": [16, 16]})
    with pytest.raises(ConfigError, match=r"seed is fixed by set \(3\) and is also an axis .*use --axis seed=VALUE"):
        expand(dataclasses.replace(spec, set={"seed": 3}))
    with pytest.raises(ConfigError, match="train.batch_size is fixed by set .* a TOML spec without that zip axis"):
        expand(dataclasses.replace(spec, set={"batch_size": 32}))
    # an axis from the command line replaces a fixed value of the spec (phase-diagram fixes depth 6)
    depths = {p.config.model.n_layers for p in expand(load_spec("phase-diagram", axes={"n_layers": [2, 4]}))}
    assert depths == {2, 4}
    with pytest.raises(ConfigError, match="task.alpha is fixed by set"):
        expand(load_spec("quick-phase-diagram", overrides={"task.alpha": 0.8}))


@pytest.mark.parametrize(
    "axes, message",
    [
        ({"n_idd": [4]}, "unknown config field 'n_idd'; did you mean"),
        ({"n_id": []}, "axis 'n_id' of sweep 't' is empty"),
        ({"n_id": [4, 6]}, "grid point task.n_id=6: task.n_id = 6 is not a multiple of 4"),
        ({"alpha": ["high"]}, "task.alpha = 'high' must be a number"),
        ({"rule": ["square"]}, "task.rule = 'square'; choose one of rectangular, random"),
        ({"n_id": [4, 4]}, "are the same config"),
    ],
)
def test_bad_specs_fail_before_anything_runs_with_one_line(axes, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as e:
        run_sweep(_spec(**axes), tmp_path / "s", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "s").exists()


def test_toml_spec_and_command_line_axes(tmp_path):
    f = tmp_path / "grid.toml"
    f.write_text('name = "g"\npreset = "quick"\n[set]\n"train.steps" = 100\n[axes]\nn_id = [8, 16]\nseed = [1, 2]\n')
    spec = load_spec(f, axes={"seed": [5]}, overrides={"lr": 1e-3})
    pts = expand(spec)
    assert [(p.config.task.n_id, p.config.seed) for p in pts] == [(8, 5), (16, 5)]
    assert {p.config.train.steps for p in pts} == {100} and {p.config.train.lr for p in pts} == {1e-3}
    (tmp_path / "bad.toml").write_text("name = 'x'\n[axes\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(tmp_path / "bad.toml")
    (tmp_path / "extra.toml").write_text("name = 'x'\ngrid = 3\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_spec(tmp_path / "extra.toml")
    assert parse_assignment("n_id=8, 16,32") == ("n_id", [8, 16, 32])
    assert parse_assignment("alpha=0.5") == ("alpha", [0.5])
    assert parse_assignment("rule=random") == ("rule", ["random"])


def test_relaunch_skips_finished_points_and_the_table_has_one_row_per_point(tmp_path, monkeypatch):
    calls = _count_trains(monkeypatch)
    spec, out = _spec(), tmp_path / "s"
    report = run_sweep(spec, out, progress=False, ensemble=False)
    assert len(report.finished) == 4 and not report.failed and len(calls) == 4
    again = run_sweep(spec, out, progress=False, ensemble=False)
    assert len(calls) == 4 and sorted(again.skipped) == sorted(report.finished)
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["hash"]) == sorted(report.finished)
    assert pd.read_parquet(out / "results.parquet").shape == df.shape
    row = df.set_index("hash").loc[report.finished[0]]
    summary = json.loads((out / "runs" / report.finished[0] / "summary.json").read_text())
    assert row["final.ood_test.acc_last"] == summary["final"]["ood_test"]["acc_last"]
    assert row["best_ood.id_train.acc"] == summary["best_ood"]["id_train"]["acc"]
    assert row["best_ood_step"] == summary["best_ood"]["step"]
    assert row["phase"] == summary["phase"] and row["steps"] == 20 and row["wall_s"] > 0
    assert {"p", "n_id", "alpha", "n_layers", "seed", "phase_best_ood"} <= set(df.columns)
    index = pd.read_csv(out / "index.csv")
    assert list(index["status"]) == ["done"] * 4


def test_a_failing_point_is_reported_and_rerun_on_relaunch_while_the_others_finish(tmp_path, monkeypatch):
    calls = _count_trains(monkeypatch, fail_seed=2)
    spec, out = _spec(), tmp_path / "s"
    report = run_sweep(spec, out, progress=False, ensemble=False)
    assert len(report.finished) == 2 and len(report.failed) == 2 and len(calls) == 4  # each point tried once
    assert all(msg == "RuntimeError: injected failure" for msg in report.failed.values())
    for h in report.failed:
        assert point_status(out / "runs" / h) == "failed"
        assert "Traceback" in (out / "runs" / h / "error.txt").read_text()
    assert len(pd.read_csv(out / "results.csv")) == 2
    monkeypatch.undo()  # the fault is gone
    report2 = run_sweep(spec, out, progress=False, ensemble=False)
    assert sorted(report2.finished) == sorted(report.failed) and sorted(report2.skipped) == sorted(report.finished)
    assert len(pd.read_csv(out / "results.csv")) == 4


def test_killed_sweep_resumes_the_interrupted_point_and_redoes_nothing(tmp_path, monkeypatch):
    spec, out = _spec(), tmp_path / "s"
    first = expand(spec)[0]
    # an interrupted point: a checkpoint at step 10 of 20, no summary
    modicl.training.train(first.config, out / "runs" / first.hash, progress=False, stop_after=10)
    assert point_status(out / "runs" / first.hash) == "interrupted"
    calls = _count_trains(monkeypatch, interrupt_after=2)  # Ctrl-C when the third point starts
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, progress=False, ensemble=False)
    assert calls == [(4, 1, True), (4, 2, False)]
    assert len(pd.read_csv(out / "results.csv")) == 2
    monkeypatch.undo()
    calls = _count_trains(monkeypatch)
    report = run_sweep(spec, out, progress=False, ensemble=False)
    assert calls == [(8, 1, False), (8, 2, False)] and len(report.skipped) == 2
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["hash"].is_unique
    rows = (out / "runs" / first.hash / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [0, 10, 20]


def test_cli_sweep_dry_run_and_one_line_errors(tmp_path, capsys):
    f = tmp_path / "grid.toml"
    f.write_text('name = "g"\npreset = "quick"\n[axes]\nn_id = [8, 16]\n')
    assert (
        main(
            [
                "sweep",
                str(f),
                "--out",
                str(tmp_path / "s"),
                "--dry-run",
                "--axis",
                "seed=1,2",
                "--axis",
                "alpha=0.6,0.8",
                "--set",
                "train.steps=7",
                "--set",
                "lr=0.01",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"8 points in {tmp_path / 's'}: 8 new"  # both repeated --axis flags count
    assert main(["sweep", str(f), "--out", str(tmp_path / "s"), "--axis", "n_id=8,10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modicl sweep: error: grid point task.n_id=10") and "\n" not in err
    assert main(["sweep", "no-such-spec"]) == 2
    assert "neither a built-in" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "give a run directory (modicl train --out) or a sweep directory" in capsys.readouterr().err


def test_every_spec_the_docs_name_expands_under_its_own_name():
    # the docs give `modicl sweep docs/specs/NAME.toml` as the command behind each table: every such file must
    # still load against today's presets and fields, and name its sweep after its file
    specs = sorted((Path(__file__).parent.parent / "docs" / "specs").glob("*.toml"))
    assert len(specs) >= 40
    for path in specs:
        spec = load_spec(path)
        assert spec.name == path.stem and len(expand(spec)) >= 1, path.name


def test_builtin_specs_expand_to_the_paper_grids():
    pd_points = expand(load_spec("phase-diagram"))
    assert len(pd_points) == 49  # PAPER.md §3: n_id 2³…2⁹ × α 0.2…0.8
    assert {p.config.task.n_id for p in pd_points} == {8, 16, 32, 64, 128, 256, 512}
    assert {p.config.task.p for p in pd_points} == {29} and {p.config.train.batch_size for p in pd_points} == {1024}
    depth = expand(load_spec("depth"))
    assert {p.config.model.n_layers for p in depth} == {1, 2, 4, 6}
    quick = expand(load_spec("quick-phase-diagram"))
    # 4 n_id × 3 α × 3 seeds on the demo preset, the batch a multiple of n_id
    assert len(quick) == 36 and all(p.config.train.batch_size % p.config.task.n_id == 0 for p in quick)
    assert {p.config.seed for p in quick} == {1, 2, 3} and {
        (p.config.model.n_layers, p.config.model.d_model) for p in quick
    } == {(2, 64)}
    assert [p.config.seed for p in quick[:12]] == [1] * 12  # seed outermost: a sweep stopped part way holds whole seeds
    cell = next(p for p in quick if p.config.task.alpha == 0.8 and p.config.task.n_id == 32 and p.config.seed == 1)
    assert cell.config == preset("quick-muon")
    quick_d4 = expand(load_spec("quick-phase-diagram-d4"))
    assert len(quick_d4) == 12 and {p.config.model.n_layers for p in quick_d4} == {4}
    depth = {(p.config.model.n_layers, p.config.seed): p for p in expand(load_spec("quick-depth"))}
    assert {d for d, _ in depth} == {1, 2, 4, 6} and {s for _, s in depth} == {1, 2, 3, 4, 5}
    # its depth-2 points are the demo preset's seeds, the α = 0.8, n_id = 32 cell of quick-phase-diagram
    assert depth[2, 1].hash == cell.hash and depth[4, 1].config.model.d_model == 64


def test_plot_of_a_sweep_where_every_point_failed_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    _count_trains(monkeypatch, fail_seed=1)
    run_sweep(_spec(n_id=[4], seed=[1]), tmp_path / "s", progress=False, ensemble=False)
    assert main(["plot", str(tmp_path / "s")]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_two_worker_processes_finish_every_point_and_share_the_table(tmp_path, capfd):
    spec, out = _spec(), tmp_path / "s"
    report = run_sweep(spec, out, progress=True, workers=2)
    assert len(report.finished) == 4 and not report.failed
    # each worker's run ends with a plain line named by its axis values (no bar redraws between processes)
    err = capfd.readouterr().err
    assert "\r" not in err
    for n_id in (4, 8):
        for seed in (1, 2):
            assert f"n_id={n_id} seed={seed}: 20/20 step (100.0 %)" in err
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["hash"].is_unique
    cfg = json.loads((out / "runs" / report.finished[0] / "config.json").read_text())
    assert cfg["train"]["threads"] >= 1
    assert run_sweep(spec, out, progress=False, workers=2).skipped  # relaunch: nothing redone


def test_a_job_is_named_by_its_axis_values_in_progress_lines():
    points = expand(SweepSpec("t", base=tiny_config(), axes={"n_id": [4], "lr": [0.002], "seed": [1, 2]}))
    one, two = (Job((points[0],), (Path("a"),)), Job(tuple(points), (Path("a"), Path("b"))))
    assert job_label(one) == "n_id=4 lr=0.002 seed=1"
    assert job_label(two) == "2 runs (n_id=4 lr=0.002 seed=1, …)"


def test_a_point_being_trained_elsewhere_is_left_alone_and_shown_running(tmp_path):
    from modicl.runlock import RunLocked, is_locked, lock_run
    from modicl.sweep import Job, load_sweep, run_job, sweep_status

    spec = _spec(seed=[1])
    run_sweep(spec, tmp_path, progress=False)
    _, (point,) = load_sweep(tmp_path)
    run_dir = tmp_path / "runs" / point.hash
    assert not is_locked(run_dir)  # released after training
    (run_dir / "summary.json").unlink()  # now interrupted after its last checkpoint
    held = lock_run(run_dir)  # as another process training it would
    try:
        assert sweep_status(tmp_path)[0]["state"] == "running"
        with pytest.raises(RunLocked, match="being trained by another process"):
            modicl.training.train(point.config, run_dir, resume=True)
        out = run_job(Job((point,), (run_dir,)))
        assert out[point.hash].startswith("RunLocked:")
        assert not (run_dir / "error.txt").exists() and (run_dir / "checkpoints" / "last.safetensors").exists()
    finally:
        held.close()
    assert sweep_status(tmp_path)[0]["state"] == "interrupted"
    assert run_job(Job((point,), (run_dir,))) == {point.hash: None}
    assert point_status(run_dir) == "done"


def test_plot_sweep_draws_the_phase_diagram_and_depth_figures(tmp_path):
    from modicl.sweep.figures import _cells, plot_sweep

    grid = tmp_path / "grid"
    run_sweep(_spec(n_id=[4, 8], alpha=[0.6, 0.8], seed=[1]), grid, progress=False)
    written = {p.name for p in plot_sweep(grid)}
    assert written == {
        f"{n}.{ext}"
        for n in ("phase_diagram", "accuracy_heatmaps", "training_curves", "ood_vs_n_id")
        for ext in ("png", "pdf")
    } | {"cells.md"}
    df = pd.read_csv(grid / "results.csv")
    # one seed per cell: each cell's phase count is its run's own phase
    phases = {(c["n_id"], c["alpha"]): c["phases"] for c in _cells(df)}
    assert phases == {(r.n_id, r.alpha): {r.phase if r.phase in PHASES else "unlisted": 1} for r in df.itertuples()}
    table = (grid / "plots" / "cells.md").read_text().splitlines()
    assert len([line for line in table if line.startswith("| 4 ") or line.startswith("| 8 ")]) == 4  # one row per cell

    depth = tmp_path / "depth"
    run_sweep(_spec(n_layers=[1, 2], seed=[1]), depth, progress=False)
    written = {p.name for p in plot_sweep(depth)}
    assert {
        "depth.png",
        "depth.pdf",
        "transient.md",
        "training_curves_n_layers1.png",
        "training_curves_n_layers2.png",
        "algorithmic_shift.png",
        "algorithmic_shift.md",
    } <= written
    shift = (depth / "plots" / "algorithmic_shift.md").read_text()
    # a row per depth and class, in each o.o.d. set's table; the bands stop at the last shot (n_ctx 4: k 2–3)
    assert shift.count("| depth 1 | MR-only |") == 2 and shift.count("| depth 2 | RM-solvable |") == 2
    assert "| group | class | k 2–3 |" in shift

    # the seed tables of the docs (scripts/seed_table.py): one row per finished run, from its own files
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_table", Path(__file__).parents[1] / "scripts" / "seed_table.py")
    seed_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_table)
    df = pd.read_csv(depth / "results.csv")
    r = df.iloc[0]
    cells = seed_table.seed_row(depth / "runs" / r["hash"], 1).strip("| ").split(" | ")
    assert len(cells) == len(seed_table.HEAD) and cells[0] == "1"
    assert cells[2] == " / ".join(
        f"{r[f'final.{s}.acc_last_novel']:.2f}" for s in ("id_train", "id_test", "ood_train", "ood_test")
    )


def test_a_cell_is_its_seeds_phase_counts_and_seed_mean_intervals_never_the_phase_of_seed_means():
    from modicl.sweep.cells import cells_markdown
    from modicl.sweep.figures import _cells

    sets = ("id_train", "id_test", "ood_train", "ood_test")
    rows = [  # two seeds generalize o.o.d., one does not: the seed-mean o.o.d. test (0.53) would also pass 0.5
        {
            "p": 7,
            "n_id": 8,
            "alpha": 0.8,
            "phase": "ood_generalization",
            **{f"final.{s}.acc_last_novel": 0.7 for s in sets},
        },
        {
            "p": 7,
            "n_id": 8,
            "alpha": 0.8,
            "phase": "ood_generalization",
            **{f"final.{s}.acc_last_novel": 0.7 for s in sets},
        },
        {
            "p": 7,
            "n_id": 8,
            "alpha": 0.8,
            "phase": "unlisted_pattern",
            **{f"final.{s}.acc_last_novel": 0.2 for s in sets},
        },
        {"p": 7, "n_id": 16, "alpha": 0.8, "phase": "none", **{f"final.{s}.acc_last_novel": 0.1 for s in sets}},
        {"p": 7, "n_id": 16, "alpha": 0.8, "phase": "none", **{f"final.{s}.acc_last_novel": 0.3 for s in sets}},
    ]
    cells = {c["n_id"]: c for c in _cells(pd.DataFrame(rows))}
    assert (cells[8]["phases"], cells[8]["n"]) == ({"ood_generalization": 2, "unlisted": 1}, 3)
    # n = 2: mean 0.2, sd 0.1414, t(0.975, 1) = 12.706, half-width 12.706 · 0.1414 / √2 = 1.27 → clipped to [0, 1]
    assert cells[16]["phases"] == {"none": 2} and cells[16]["acc"]["ood_test"] == "0.20 [0.00, 1.00]"
    md = cells_markdown(pd.DataFrame(rows))
    # n_id 8 of p² = 49 tasks: 16 %; n_id 16: 33 %
    assert "| 8 | 16% | 3 | ood generalization 2, unlisted pattern 1 |" in md and "| 16 | 33% | 2 | none 2 |" in md


def _wait_until_two_points_checkpointed(proc, out) -> None:
    import time

    deadline = time.monotonic() + 120
    while len(list(out.glob("runs/*/checkpoints/last.safetensors"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the two workers never checkpointed"
        time.sleep(0.5)


def _interrupt_once_two_points_checkpointed(proc, out, sig):
    """Send ``sig`` to ``proc`` (a sweep in its own session) once two points have a checkpoint; its exit code.
    A sweep that does not exit within 60 s gets SIGABRT, so that with PYTHONFAULTHANDLER set (see
    ``_SWEEP_ENV``) it and its workers print their Python stacks to stderr before the test fails.
    A failing test still kills the whole group, so no worker is left behind."""
    import contextlib
    import os
    import signal
    import subprocess

    try:
        _wait_until_two_points_checkpointed(proc, out)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                err = "(stderr not readable: the sweep still runs after SIGABRT)"
            raise AssertionError(
                f"the sweep did not exit within 60 s of the signal; its stacks:\n{(err or '')[-6000:]}"
            ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _warn_of_killed_workers(stderr: str) -> None:
    """A worker killed after the grace period still leaves a correct sweep, but is a defect to look into."""
    import warnings

    if "did not stop within" in stderr:
        warnings.warn(f"a sweep worker needed SIGKILL:\n{stderr}", stacklevel=2)


_SWEEP_ENV = {**os.environ, "PYTHONFAULTHANDLER": "1"}


_INTERRUPTIBLE_SWEEP = """
import sys
sys.path.insert(0, sys.argv[2])
from conftest import tiny_config
from modicl.sweep import SweepSpec, run_sweep
spec = SweepSpec("t", base=tiny_config(steps=1_000_000, eval_every=20), axes={"seed": [1, 2, 3]})
try:
    run_sweep(spec, sys.argv[1], progress=False, workers=2)
except KeyboardInterrupt:
    sys.exit(130)
"""


# Slow, not in `make test`: this test hung intermittently (the sweep did not exit within 60 s of SIGINT) in
# 1 of the last ~10 full suites, root cause unknown; a hang now prints the sweep's and workers' stacks.
# The command-level SIGTERM / SIGINT tests below stay in the fast suite.
@pytest.mark.slow
def test_sigint_to_the_sweep_process_alone_stops_its_workers_and_keeps_their_checkpoints(tmp_path):
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    from modicl.runlock import is_locked

    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTIBLE_SWEEP, str(out), str(pathlib.Path(__file__).parent)],
        start_new_session=True,
        env=_SWEEP_ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    # as `kill -INT`: the workers do not get it from the terminal
    assert _interrupt_once_two_points_checkpointed(proc, out, signal.SIGINT) == 130
    _warn_of_killed_workers(proc.stderr.read())
    runs = sorted(out.glob("runs/*"))
    assert len(runs) == 2  # the third point never started
    assert [point_status(d) for d in runs] == ["interrupted", "interrupted"]
    assert not any(is_locked(d) for d in runs)  # no worker is still training
    sizes = [(d / "metrics.jsonl").stat().st_size for d in runs]
    time.sleep(2)
    assert [(d / "metrics.jsonl").stat().st_size for d in runs] == sizes


@pytest.mark.parametrize("kill", ["SIGTERM to the process group", "SIGKILL to the sweep process"])
def test_workers_of_a_sweep_process_killed_from_outside_checkpoint_and_exit(tmp_path, kill):
    # The library API installs no signal handler: SIGTERM to the group (`timeout`, a test runner) kills the
    # sweep process at once, beside its workers' own SIGTERM; SIGKILL sends the workers nothing. Either way
    # no worker may go on training, orphaned: each keeps its checkpoint and exits, and so the whole group ends.
    import contextlib
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    from modicl.runlock import is_locked

    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTIBLE_SWEEP, str(out), str(pathlib.Path(__file__).parent)],
        start_new_session=True,
        env=_SWEEP_ENV,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_two_points_checkpointed(proc, out)
        if kill.startswith("SIGTERM"):
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        alive = True
        while alive and time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)  # any process left in the group: a worker (or its resource tracker)
                time.sleep(0.2)
            except ProcessLookupError:
                alive = False
        assert not alive, "a worker outlived its killed sweep process by 60 s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    runs = sorted(out.glob("runs/*"))
    assert len(runs) == 2
    assert [point_status(d) for d in runs] == ["interrupted", "interrupted"]
    assert not any(is_locked(d) for d in runs)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_the_sweep_command_stops_its_workers_on_sigterm_and_on_sigint_inherited_as_ignored(tmp_path, sig):
    # SIGINT: as for `modicl sweep … &` from a script, where the shell makes the job ignore SIGINT
    import signal
    import subprocess
    import sys

    from modicl.runlock import is_locked

    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "sig"\npreset = "quick-depth2"\n[set]\n"train.steps" = 100000\n'
        '"train.eval_every" = 20\n"train.eval_sequences" = 32\n[axes]\nseed = [1, 2, 3]\n'
    )
    out = tmp_path / "s"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modicl",
            "sweep",
            str(spec),
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-ensemble",
            "--no-progress",
        ],
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        env=_SWEEP_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _interrupt_once_two_points_checkpointed(proc, out, getattr(signal, sig)) == 130
    stderr = proc.stderr.read()
    assert "interrupted" in stderr
    _warn_of_killed_workers(stderr)
    runs = sorted(out.glob("runs/*"))
    assert [point_status(d) for d in runs] == ["interrupted", "interrupted"]
    assert not any(is_locked(d) for d in runs)


def _ignore_sigterm_and_sleep() -> None:
    import os
    import signal
    import time

    from modicl.signals import signals_held
    from modicl.sweep.local import _worker_init

    _worker_init(os.getppid())
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with signals_held():  # as every checkpoint commit does: the stack signal must survive it
        pass
    time.sleep(600)


def _start_as_worker_of(parent: int) -> None:
    import time

    from modicl.sweep.local import _worker_init

    _worker_init(parent)
    time.sleep(600)


def test_a_worker_whose_sweep_process_died_before_it_started_exits():
    # A sweep killed by SIGKILL while its workers start: a worker that read its parent with getppid then
    # would watch PID 1 and train the queued jobs on, orphaned. It is handed the sweep's pid instead.
    import multiprocessing
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    child = multiprocessing.get_context("fork").Process(target=_start_as_worker_of, args=(gone.pid,))
    child.start()
    try:
        child.join(30)
        assert child.exitcode == 130
    finally:
        child.kill()


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(capfd):
    import multiprocessing
    import signal
    import time

    from modicl.sweep.local import _stop_workers

    class Pool:
        shutdown_calls = []

        def shutdown(self, **kw):
            self.shutdown_calls.append(kw)

    child = multiprocessing.get_context("fork").Process(target=_ignore_sigterm_and_sleep)
    child.start()
    time.sleep(1.0)  # let it install its handler
    assert child.is_alive()
    t0 = time.monotonic()
    _stop_workers(Pool(), {child}, grace_s=1.0)
    assert not child.is_alive()
    assert time.monotonic() - t0 < 10
    assert Pool.shutdown_calls == [{"wait": False, "cancel_futures": True}]
    err = capfd.readouterr().err
    assert f"worker {child.pid} did not stop within 1 s of SIGTERM (process state: S" in err
    assert "_ignore_sigterm_and_sleep" in err  # its stack, from its own handler, after a checkpoint's commit
    assert child.exitcode == -signal.SIGKILL


# ---------------------------------------------- a new executor: one class and one line of the table


@dataclasses.dataclass(frozen=True)
class FakeOptions:
    queue: str = "default"
    """the queue to submit to."""


@dataclasses.dataclass
class FakeRemote:
    """A scheduler that runs each job at once when it is submitted, in this process."""

    opts: FakeOptions
    name: str
    label = "FAKE"
    Options = FakeOptions
    ensembles = True
    waits = False
    built: ClassVar[list] = []  # (options, name) of each construction

    def __post_init__(self):
        FakeRemote.built.append((self.opts, self.name))

    def check(self, out_dir):
        pass

    def prepare(self, jobs):
        return jobs

    def active(self, out_dir):
        return set()

    def submit(self, jobs, out_dir, record):
        from modicl.sweep import refresh_tables, run_job
        from modicl.sweep.executor import Submission

        subs = []
        for i, job in enumerate(jobs):
            run_job(job)
            subs.append(Submission(f"fake-{i}", tuple(p.hash for p in job.points)))
        refresh_tables(out_dir)
        return subs

    @classmethod
    def report(cls, out_dir, rows):
        pass

    @classmethod
    def follow(cls, out_dir, *, progress):
        from modicl.sweep import sweep_status

        return sweep_status(out_dir)


def test_a_new_executor_in_the_table_is_offered_by_modicl_sweep_with_its_options(tmp_path, monkeypatch, capsys):
    from modicl.cli import sweep as cli_sweep
    from modicl.sweep import executor

    monkeypatch.setitem(executor.KINDS, "fake", f"{__name__}:FakeRemote")
    cli_sweep.sweep_command.cache_clear()
    try:
        spec_file = tmp_path / "spec.toml"
        spec_file.write_text(
            'name = "fk"\npreset = "quick"\n[set]\n"task.p" = 5\n"task.n_id" = 4\n"task.n_ctx" = 4\n'
            '"model.d_model" = 16\n"model.n_layers" = 1\n"train.steps" = 4\n"train.eval_every" = 4\n'
            '"train.eval_sequences" = 8\n"train.dtype" = "fp32"\n[axes]\nseed = [1, 2]\n'
        )
        out = tmp_path / "s"
        argv = ["sweep", str(spec_file), "--out", str(out), "--executor", "fake", "--no-progress"]
        assert main([*argv, "--fake.queeu", "q1"]) == 2
        assert "did you mean --fake.queue?" in capsys.readouterr().err
        assert main([*argv, "--fake.queue", "q1", "--wait"]) == 0
        printed = capsys.readouterr().out
        assert "submitted 2 points as 1 FAKE jobs: fake-0" in printed and "2 points: 2 done" in printed
        assert FakeRemote.built[-1] == (FakeOptions("q1"), "fk")
        assert len(pd.read_csv(out / "results.csv")) == 2
    finally:
        cli_sweep.sweep_command.cache_clear()
