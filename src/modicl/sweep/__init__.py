"""Idempotent grids of runs: the paper's phase diagrams and depth study (PAPER.md §3, Fig. 1b, Fig. 3).

A :class:`SweepSpec` names a preset, fixed overrides (``set``) and axes; its grid is the product of the
axes. Every grid point is an ordinary run directory ``OUT/runs/HASH``, where HASH is the hash of the
resolved config without the execution-only fields (device, threads, compile), so the same point is
the same directory on any machine. Running a sweep skips finished points, resumes interrupted ones
from ``checkpoints/last`` and re-runs failed ones (from their last checkpoint when they have one: a
failure mid-run, such as a lost node or a job out of time, must not throw training away); one failing
point never stops the others. The results table (``results.csv`` and ``results.parquet``) is rebuilt
from the run directories after every point, so a killed and relaunched sweep neither loses nor
duplicates a row.

Spec files are TOML::

    name = "my-grid"
    preset = "quick"
    [set]
    "train.steps" = 3000
    [axes]
    "task.n_id" = [8, 16, 32]
    "task.alpha" = [0.4, 0.8]
    seed = [1, 2, 3]
    [zip]                       # optional: fields that vary together, as one more axis
    "task.n_id" = [8, 24, 40]
    "train.batch_size" = [64, 72, 80]

Field names are ``part.field`` (``task.n_id``) or a bare field name when it is unique (``n_id``).
A sweep is a list of independent, serialisable :class:`Job` s (plain data: configs and paths), so an
executor (:mod:`~modicl.sweep.executor`) only has to run ``run_job`` somewhere: in this process, in a
pool of worker processes, or on a SLURM cluster (:mod:`~modicl.sweep.slurm`). Points that differ
only in their data (n_id, α, seed, …) form one job and train together as an ensemble
(:mod:`modicl.ensemble`) unless ``ensemble=False``.

The package: :mod:`~modicl.sweep.spec` (specs, field paths, grid points, the built-ins),
:mod:`~modicl.sweep.status` (a point's state on disk, failure records, the status table),
:mod:`~modicl.sweep.jobs` (jobs and running one), :mod:`~modicl.sweep.tables` (index and results
tables), :mod:`~modicl.sweep.executor` (the executor interface), :mod:`~modicl.sweep.local`
(:func:`run_sweep`, and the executors in this process or a pool of workers) and
:mod:`~modicl.sweep.slurm` (the SLURM executor; imported on use). Everything but the SLURM executor is
importable from ``modicl.sweep``.
"""

from .executor import KINDS, Executor, Submission, executor_class
from .jobs import Job, make_jobs, run_job, torch_oom, with_threads
from .local import InProcess, ProcessPool, SweepReport, run_sweep
from .spec import (
    BUILTIN,
    Point,
    SweepSpec,
    expand,
    load_spec,
    load_sweep,
    parse_assignment,
    point_dir,
    point_hash,
    resolve_field,
    with_field,
)
from .status import check_sweep_dir, format_status, point_status, sweep_status
from .tables import collect_results, refresh_tables, tables_lock, write_index, write_results

__all__ = [
    "BUILTIN",
    "KINDS",
    "Executor",
    "InProcess",
    "Job",
    "Point",
    "ProcessPool",
    "Submission",
    "SweepReport",
    "SweepSpec",
    "check_sweep_dir",
    "collect_results",
    "executor_class",
    "expand",
    "format_status",
    "load_spec",
    "load_sweep",
    "make_jobs",
    "parse_assignment",
    "point_dir",
    "point_hash",
    "point_status",
    "refresh_tables",
    "resolve_field",
    "run_job",
    "run_sweep",
    "sweep_status",
    "tables_lock",
    "torch_oom",
    "with_field",
    "with_threads",
    "write_index",
    "write_results",
]
