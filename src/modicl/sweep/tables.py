"""A sweep's tables: ``spec.json`` and ``index.csv`` (every point, its axes and status) and the results
table (``results.csv`` / ``results.parquet``, one row per finished point), rebuilt from the run
directories under a file lock, so that concurrent writers (cluster jobs) each leave a complete table.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..history import BEST_OOD
from ..rundir import RunDir
from .spec import Point, SweepSpec, load_sweep, point_dir
from .status import point_status

# Columns every results row has, under short names; other axes keep their full field name.
_SHORT = {"task.p", "task.n_id", "task.alpha", "model.n_layers", "seed"}


def _tmp(path: Path) -> Path:
    """A temporary name beside ``path``, private to this process (cluster jobs rewrite the tables concurrently)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def tables_lock(out_dir: Path):
    """Hold the sweep's table lock (``OUT/.tables.lock``) while rewriting its index and results."""
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".tables.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_index(spec: SweepSpec, points: Sequence[Point], out_dir: Path) -> None:
    """``OUT/spec.json`` and ``OUT/index.csv`` (hash, axis values, status), rewritten atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(out_dir / "spec.json")
    tmp.write_text(json.dumps(dataclasses.asdict(spec), indent=1))
    tmp.replace(out_dir / "spec.json")
    axes = list(points[0].axes) if points else []
    tmp = _tmp(out_dir / "index.csv")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["hash", *axes, "status", "run_dir"])
        for p in points:
            run_dir = point_dir(out_dir, p.hash)
            w.writerow([p.hash, *(p.axes[a] for a in axes), point_status(run_dir), str(run_dir.relative_to(out_dir))])
    tmp.replace(out_dir / "index.csv")


def collect_results(points: Sequence[Point], out_dir: Path):
    """The results table as a pandas DataFrame, one row per finished point (one per seed): hash, p,
    n_id, alpha, n_layers, seed, the other axes (by full field name); for the final and the
    best-o.o.d. checkpoint (selected on the validation o.o.d. tasks) and each set, the columns of
    :func:`modicl.phases.flat_columns` (accuracies on all and on novel queries with 95 % intervals,
    counts, null models, loss); the best-o.o.d. step; the phase and its ✓/✗ pattern (final and at the
    best checkpoint); steps, wall time in seconds, and the numerics (threads, dtype, CPU kind).
    Points without summary.json are left out."""
    import pandas as pd

    from ..metrics import SETS, VAL_SET
    from ..phases import flat_columns

    rows = []
    for p in points:
        s = RunDir(point_dir(out_dir, p.hash)).read_summary()
        if s is None:
            continue
        cfg = p.config
        row: dict[str, Any] = {
            "hash": p.hash,
            "p": cfg.task.p,
            "n_id": cfg.task.n_id,
            "alpha": cfg.task.alpha,
            "n_layers": cfg.model.n_layers,
            "seed": cfg.seed,
        }
        row.update({k: v for k, v in p.axes.items() if k not in _SHORT})
        for which in ("final", BEST_OOD):
            for st in (*SETS, VAL_SET):
                if st in s[which]:
                    row.update(flat_columns(f"{which}.{st}", s[which][st]))
        row["best_ood_step"] = s[BEST_OOD]["step"]
        row["phase"], row["phase_best_ood"] = s["phase"], s["phase_best_ood"]
        row["phase_pattern"], row["phase_pattern_best_ood"] = s.get("phase_pattern"), s.get("phase_pattern_best_ood")
        row["steps"], row["wall_s"] = s["steps"], s["wall_s"]
        row.update({k: s.get(k) for k in ("threads", "dtype", "cpu_kind")})
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(points: Sequence[Point], out_dir: Path):
    """Rebuild ``results.csv`` and ``results.parquet`` from the run directories; return the DataFrame."""
    df = collect_results(points, out_dir)
    tmp = _tmp(out_dir / "results.csv")
    df.to_csv(tmp, index=False)
    tmp.replace(out_dir / "results.csv")
    tmp = _tmp(out_dir / "results.parquet")
    df.to_parquet(tmp, index=False)
    tmp.replace(out_dir / "results.parquet")
    return df


def refresh_tables(out_dir: str | Path) -> None:
    """Rewrite ``index.csv`` and the results table of the sweep in ``out_dir`` from its run directories,
    under a file lock, so that jobs finishing at the same time on a cluster each leave a complete table."""
    out_dir = Path(out_dir)
    spec, points = load_sweep(out_dir)
    with tables_lock(out_dir):
        write_index(spec, points, out_dir)
        write_results(points, out_dir)
