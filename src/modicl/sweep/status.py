"""The state of a sweep's points on disk: done, interrupted, failed or new.

A point's state is its run directory's (:meth:`modicl.rundir.RunDir.status`). A sweep directory is recognised by its
``spec.json``. :func:`sweep_status` gathers the
per-point states from disk, the run locks and what each executor reports (:mod:`modicl.sweep.executor`:
e.g. the SLURM queue), for local and cluster sweeps alike; :func:`format_status` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..rundir import RunDir
from .spec import load_sweep, point_dir

# What a sweep directory may hold before its spec.json: the table lock, run directories, SLURM files.
_SWEEP_SCAFFOLD = {".tables.lock", "runs", "slurm"}


def check_sweep_dir(out_dir: str | Path) -> None:
    """Refuse a sweep directory that holds something else (its tables would be overwritten).

    Raises:
        ConfigError: ``out_dir`` is a file, or a directory that holds anything but a sweep's files and
            has no ``spec.json`` (the first file every sweep writes).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"sweep directory {out_dir} is a file; choose another --out")
    if (
        out_dir.is_dir()
        and not (out_dir / "spec.json").exists()
        and any(e.name not in _SWEEP_SCAFFOLD for e in out_dir.iterdir())
    ):
        raise ConfigError(
            f"{out_dir} is not empty and holds no modicl sweep (no spec.json); choose another --out (nothing was "
            "changed)"
        )


def point_status(run_dir: Path) -> str:
    """``done``, ``interrupted``, ``failed`` or ``new``: :meth:`modicl.rundir.RunDir.status`."""
    return RunDir(run_dir).status()


def sweep_status(out_dir: str | Path, points: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Per-point state of the sweep in ``out_dir``, in grid order: dicts with ``hash``, ``axes``,
    ``state``, ``job_id`` (latest submission to a scheduler, or None), ``step`` (last evaluated step or
    None), ``steps`` (the run's total), ``error`` (for failed points) and ``note`` (e.g. SLURM's reason for
    a queued job, or why the queue could not be read).

    States: done; running (a process holds the run's lock) or queued / running as an executor reports it
    (e.g. its latest SLURM job is in the queue), also while an earlier attempt's error is on disk; failed
    (error.txt, or a SLURM job that ended before training started); interrupted (a checkpoint, nothing
    running); new; another scheduler state in lower case (e.g. suspended). When a scheduler cannot be
    asked the states come from disk and ``note`` says so.

    Args:
        points: the grid points (default: those of ``out_dir/spec.json``).
    Raises:
        ConfigError when ``out_dir`` is not a sweep directory."""
    from .executor import KINDS, executor_class

    out_dir = Path(out_dir)
    if points is None:
        _, points = load_sweep(out_dir)
    rows = []
    for p in points:
        run = RunDir(point_dir(out_dir, p.hash))
        state, error = run.status(), None
        if state != "done" and run.is_locked():  # trained by a local process (modicl train / sweep)
            state = "running"
        elif state == "failed":
            error = run.first_error()
        rows.append(
            {
                "hash": p.hash,
                "axes": p.axes,
                "state": state,
                "job_id": None,
                "step": run.last_step(),
                "steps": p.config.train.steps,
                "error": error,
                "note": None,
            }
        )
    for kind in KINDS:
        executor_class(kind).report(out_dir, rows)
    return rows


def format_status(rows: Sequence[dict[str, Any]]) -> str:
    """The table that ``modicl status`` prints: one line per point, then the counts per state."""
    lines = []
    for r in rows:
        label = ", ".join(f"{k}={v}" for k, v in r["axes"].items()) or "-"
        where = f"job {r['job_id']}" if r["job_id"] else ""
        step = f"step {r['step']}/{r['steps']}" if r["step"] is not None and r["state"] != "done" else ""
        extra = r["error"] or " ".join(x for x in (where, step) if x)
        if r.get("note") and r["note"].startswith("SLURM reason"):
            extra += f"; {r['note']}"
        lines.append(f"{r['hash']}  {r['state']:11s}  {label}" + (f"  ({extra})" if extra else ""))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append(f"{len(rows)} points: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    notes = {r["note"] for r in rows if r.get("note") and not r["note"].startswith("SLURM reason")}
    lines += sorted(notes)
    return "\n".join(lines)
