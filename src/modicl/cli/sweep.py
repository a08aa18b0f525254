"""The sweep commands of ``modicl``: ``sweep`` (run or submit a grid), ``status`` and ``plot``; a thin layer
over :mod:`modicl.sweep` and :mod:`modicl.sweep.figures`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from ..config import ConfigError
from .args import parse, reject_empty_out


@dataclass(frozen=True)
class SweepFlags:
    """Run (or continue) a grid of runs: finished points are skipped, interrupted ones resumed, failed ones re-run."""

    spec: tyro.conf.Positional[str]
    """a built-in spec (phase-diagram, depth, quick-phase-diagram, …) or a TOML file."""
    out: Path | None = None
    """sweep directory; None means sweeps/SPEC-NAME."""
    axis: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """extra or replacement axis FIELD=V1,V2,… (e.g. n_id=8,16,32); repeat the flag for several."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """fixed override FIELD=VALUE for every point (e.g. train.steps=3000); repeat the flag for several."""
    dry_run: bool = False
    """list the grid points and their status; run nothing."""
    ensemble: bool = True
    """train points that differ only in their data together (--no-ensemble: every point on its own)."""
    workers: int = 1
    """runs at once, in separate processes sharing the CPU threads (2 on a 2-core machine: +18 %); above 1,
    each run gets cpu_count / workers threads in place of the spec's train.threads."""
    progress: bool = True
    wait: bool = False
    """with a remote --executor: follow the jobs with a progress bar until they end, then write the results table."""


@functools.cache
def sweep_command() -> type:
    """:class:`SweepFlags` with ``--executor`` and the remote executors' options (``--KIND.FIELD``), read
    from the executor table (:func:`modicl.sweep.executor.remote_kinds`), so a new executor needs no
    change here."""
    from ..sweep.executor import remote_kinds

    remote = remote_kinds()
    helps = "".join(f"; {k}: submit the jobs to {c.label} and return" for k, c in remote.items())
    choices = ("local", *remote)
    executor: Any = Annotated[
        Literal[choices],  # type: ignore[valid-type]
        tyro.conf.arg(help=f"local: run here (--workers processes at once){helps}."),
    ]
    fields: list[tuple[str, Any, Any]] = [("executor", executor, field(default="local"))]
    fields += [(kind, cls.Options, field(default_factory=cls.Options)) for kind, cls in remote.items()]
    return dataclasses.make_dataclass("SweepCommand", fields, bases=(SweepFlags,), frozen=True)


@dataclass(frozen=True)
class StatusCommand:
    """Show the state of every point of a sweep: done, running, queued, interrupted, new, or failed with its error."""

    sweep_dir: tyro.conf.Positional[Path]


@dataclass(frozen=True)
class PlotCommand:
    """Draw a sweep's figures into SWEEP_DIR/plots (phase diagram with each cell's phase fractions over seeds,
    per-set heatmaps, o.o.d. accuracy vs n_id, the depth law, training curves), or redraw one run's figures
    into RUN_DIR/plots (learning curves, progress measures with its phases, k-shot accuracy)."""

    sweep_dir: tyro.conf.Positional[Path]
    """a sweep directory, or a run directory."""


def cmd_sweep(argv: list[str]) -> int:
    """``modicl sweep``: run the grid here (or in workers), or submit it to SLURM; 1 when a point failed."""
    from ..rundir import RunDir
    from ..sweep import expand, load_spec, parse_assignment, point_dir, run_sweep

    args = parse(sweep_command(), argv, tyro.MISSING_NONPROP, "modicl sweep")
    sets = {}
    for text in args.set:
        name, values = parse_assignment(text)
        if len(values) != 1:
            raise ConfigError(f"--set {text!r} gives {len(values)} values; use --axis for several")
        sets[name] = values[0]
    axes = dict(parse_assignment(t) for t in args.axis)
    spec = load_spec(args.spec, overrides=sets, axes=axes)
    reject_empty_out(argv)
    out = args.out or Path("sweeps") / spec.name
    points = expand(spec)
    if args.dry_run:  # the same table as modicl status, SLURM jobs included
        from ..sweep import format_status, sweep_status

        print(format_status(sweep_status(out, points)).replace(" points: ", f" points in {out}: ", 1))
        return 0
    if args.executor != "local":
        return _sweep_remote(args, spec, out)
    print(f"sweep {spec.name}: {len(points)} points in {out}")
    report = run_sweep(spec, out, progress=args.progress, ensemble=args.ensemble, workers=args.workers)
    print(
        f"finished {len(report.finished)}, already done {len(report.skipped)}, failed {len(report.failed)}; "
        f"results in {out / 'results.csv'} (and .parquet)"
    )
    print_cells(out / "results.csv")
    for h, err in report.failed.items():
        print(f"  failed {h}: {err} (details in {RunDir(point_dir(out, h)).error})", file=sys.stderr)
    return 1 if report.failed else 0


def print_cells(results: Path) -> None:
    """Per cell of the sweep: how many seeds reached each phase, and the seed-mean o.o.d. test accuracy."""
    import pandas as pd

    from ..rundir import RunDir
    from ..sweep.cells import format_cells, seed_cells
    from ..sweep.spec import point_dir

    if results.exists() and results.stat().st_size > 1:
        df = pd.read_csv(results)
        if len(df) and "phase" in df:
            cfg = RunDir(point_dir(results.parent, df["hash"].iloc[0])).read_config_dict()
            print(format_cells(seed_cells(df), threshold=float(cfg.get("phase_threshold", 0.5))))


def _sweep_remote(args: Any, spec, out: Path) -> int:
    """Submit the grid to the executor ``args.executor`` of the table, with its options; with --wait, follow it."""
    from ..sweep import format_status, run_sweep
    from ..sweep.executor import remote_kinds

    kind = args.executor
    if args.workers != 1:
        raise ConfigError(
            f"--workers is for the local executor; with --executor {kind} set the resources per job with --{kind}.*"
        )
    cls = remote_kinds()[kind]
    executor = cls(getattr(args, kind), spec.name)  # type: ignore[call-arg]
    subs = run_sweep(spec, out.resolve(), progress=False, ensemble=args.ensemble, executor=executor).submitted
    if not subs:
        print(
            f"sweep {spec.name}: nothing to submit in {out} (every point is done, queued or running); see modicl "
            f"status {out}"
        )
    else:
        n = sum(len(s.hashes) for s in subs)
        print(
            f"sweep {spec.name}: submitted {n} points as {len(subs)} {cls.label} jobs: "
            + " ".join(s.job_id for s in subs)
        )
        logs = out / kind
        print((f"logs in {logs}; " if logs.is_dir() else "") + f"follow with: modicl status {out}")
    if not args.wait:
        return 0
    try:
        rows = cls.follow(out, progress=args.progress)
    except KeyboardInterrupt:
        print(
            f"\nmodicl sweep: stopped following; the {cls.label} jobs keep running: modicl status {out}",
            file=sys.stderr,
        )
        return 130
    print(format_status(rows))
    print(f"results in {out / 'results.csv'} (and .parquet)")
    print_cells(out / "results.csv")
    unfinished = sum(r["state"] != "done" for r in rows)
    if unfinished:
        print(
            f"modicl sweep: {unfinished} of {len(rows)} points did not finish (see above and modicl status {out})",
            file=sys.stderr,
        )
    return 1 if unfinished else 0


def cmd_status(argv: list[str]) -> int:
    """``modicl status``: the state of every point of a sweep."""
    from ..sweep import format_status, sweep_status

    args = parse(StatusCommand, argv, tyro.MISSING_NONPROP, "modicl status")
    print(format_status(sweep_status(args.sweep_dir)))
    return 0


def cmd_plot(argv: list[str]) -> int:
    """``modicl plot``: a sweep's (or a run's) figures, one path per line."""
    from ..report import draw_run
    from ..rundir import RunDir
    from ..sweep.figures import plot_sweep

    args = parse(PlotCommand, argv, tyro.MISSING_NONPROP, "modicl plot")
    where = Path(args.sweep_dir)
    if not where.is_dir():
        raise ConfigError(
            f"{where} does not exist; give a run directory (modicl train --out) or a sweep directory "
            "(modicl sweep --out)"
        )
    # a run is a folder with config.json (read and checked by draw_run, so a broken one is named); a sweep has spec.json
    draw = draw_run if RunDir(where).config.exists() and not (where / "spec.json").exists() else plot_sweep
    for path in draw(args.sweep_dir):
        print(path)
    return 0
