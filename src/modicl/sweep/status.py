"""The state of a sweep's points on disk: done, interrupted, failed or new; failure records.

A point is done when its run directory holds ``summary.json``, interrupted when it holds a checkpoint
but no summary, failed when an earlier attempt left ``error.txt`` (the one-line error, then the
traceback). A sweep directory is recognised by its ``spec.json``. :func:`sweep_status` gathers the
per-point states from disk, the run locks and what each executor reports (:mod:`modicl.sweep.executor`:
e.g. the SLURM queue), for local and cluster sweeps alike; :func:`format_status` prints them.
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError


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
    if out_dir.is_dir() and not (out_dir / "spec.json").exists() and any(e.name not in _SWEEP_SCAFFOLD for e in out_dir.iterdir()):
        raise ConfigError(f"{out_dir} is not empty and holds no modicl sweep (no spec.json); choose another --out (nothing was changed)")


def point_status(run_dir: Path) -> str:
    """``done`` (summary.json written), ``interrupted`` (a checkpoint, no summary), ``failed``
    (error.txt from an earlier attempt) or ``new``."""
    if (run_dir / "summary.json").exists():
        return "done"
    if (run_dir / "error.txt").exists():
        return "failed"
    if (run_dir / "checkpoints" / "last.safetensors").exists():
        return "interrupted"
    return "new"


def _prepare(run_dir: Path) -> str:
    """Make ``run_dir`` ready to train and return how: ``interrupted`` (resume from its checkpoint; also a
    failed attempt that left one, e.g. a cluster job that timed out too often or lost its node) or ``new``
    (a directory without a checkpoint is cleared)."""
    status = point_status(run_dir)
    if status == "failed" and (run_dir / "checkpoints" / "last.safetensors").exists():
        (run_dir / "error.txt").unlink()
        return "interrupted"
    if status in ("failed", "new") and run_dir.exists():
        shutil.rmtree(run_dir)
        return "new"
    return status


def _record_failure(run_dir: Path, e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".splitlines()[0]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").write_text(msg + "\n\n" + "".join(traceback.format_exception(e)))
    return msg


def _last_step(run_dir: Path) -> int | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    with path.open("rb") as fh:
        lines = fh.read().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return None


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
    from ..runlock import is_locked
    from .executor import KINDS, executor_class
    from .tables import load_sweep

    out_dir = Path(out_dir)
    if points is None:
        _, points = load_sweep(out_dir)
    rows = []
    for p in points:
        run_dir = out_dir / "runs" / p.hash
        state, error = point_status(run_dir), None
        if state != "done" and is_locked(run_dir):  # trained by a local process (modicl train / sweep)
            state = "running"
        elif state == "failed":
            error = (run_dir / "error.txt").read_text().splitlines()[0]
        rows.append({"hash": p.hash, "axes": p.axes, "state": state, "job_id": None, "step": _last_step(run_dir),
                     "steps": p.config.train.steps, "error": error, "note": None})
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
