"""The executor interface: what runs a sweep's jobs, here or elsewhere.

:func:`modicl.sweep.run_sweep` expands a spec, leaves out the points that are done (or that the executor
is running already), groups the rest into :class:`~modicl.sweep.jobs.Job` s and hands them to an
executor's ``submit``. Each job is plain data and :func:`~modicl.sweep.jobs.run_job` runs it anywhere,
so an executor only decides *where*: in this process (:class:`~modicl.sweep.local.InProcess`), in a pool
of worker processes (:class:`~modicl.sweep.local.ProcessPool`) or on a SLURM cluster
(:class:`~modicl.sweep.slurm.Slurm`). A new engine (Ray, Dask, …) is one module with one class that has
the members of :class:`Executor`, and one line in :data:`KINDS` so that ``modicl status`` asks it too;
with an ``Options`` dataclass and a ``follow`` class method (:class:`RemoteExecutor`), ``modicl sweep
--executor KIND`` offers it with a flag ``--KIND.FIELD`` per option, and nothing in the CLI names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .jobs import Job

Outcome = dict[str, "str | None"]
"""A job's result: {point hash: None when the point finished, else its one-line error}."""

Record = Callable[[Job, Outcome], None]
"""Called by an executor that waits, once per job as it ends: updates the progress bar and the tables."""


@dataclass(frozen=True)
class Submission:
    """A job handed to a scheduler: its id there (e.g. SLURM's ``ARRAYID_TASK``) and the points it trains."""

    job_id: str
    hashes: tuple[str, ...]


class Executor(Protocol):
    """Runs a sweep's jobs. Implementations are small classes (see :mod:`modicl.sweep.local`,
    :mod:`modicl.sweep.slurm`); their options are constructor arguments, checked there (ConfigError).

    ``ensembles``: whether points that share an architecture may train as one ensemble job.
    ``waits``: True when ``submit`` returns after every job ended (the sweep then writes the tables);
    False when it hands the jobs to a scheduler and returns at once (each job rewrites the tables itself,
    :func:`modicl.sweep.refresh_tables`).
    """

    ensembles: bool
    waits: bool

    def check(self, out_dir: Path) -> None:
        """Raise ConfigError (one line) when this executor cannot run here (a missing scheduler, …)."""

    def prepare(self, jobs: list[Job]) -> list[Job]:
        """The jobs as this executor runs them (e.g. with its threads per job set)."""

    def active(self, out_dir: Path) -> set[str]:
        """Hashes of the points of ``out_dir`` that this executor has queued or running now; a new
        submission leaves them out, so no point trains twice at once."""

    def submit(self, jobs: Sequence[Job], out_dir: Path, record: Record) -> list[Submission]:
        """Run or hand over ``jobs``; an executor that waits calls ``record`` once per job as it ends and
        returns []; one that hands them to a scheduler returns their submissions."""

    @classmethod
    def report(cls, out_dir: Path, rows: list[dict[str, Any]]) -> None:
        """Add what this kind of executor knows of the points of ``out_dir`` that are not done to the
        status rows of :func:`modicl.sweep.sweep_status` (state, ``job_id``, ``error``, ``note``), in
        place; rows hold ``state`` from disk and run locks already. Reads only what the executor left in
        ``out_dir`` (e.g. its submissions), so it works for any sweep directory."""


class RemoteExecutor(Executor, Protocol):
    """An executor that hands the jobs to a scheduler, as ``modicl sweep --executor KIND`` runs it:
    constructed as ``cls(options, sweep_name)``, then :func:`modicl.sweep.run_sweep` submits the jobs and
    returns, and ``--wait`` calls ``follow``. Its module keeps the scheduler's client library imported on
    use, since the CLI imports it to read ``Options``."""

    label: ClassVar[str]
    """the scheduler's name in messages (``SLURM``)."""
    Options: ClassVar[type]
    """a frozen dataclass of the executor's options (resources per job …); each field is a flag
    ``--KIND.FIELD`` of ``modicl sweep``, checked when the executor is constructed (ConfigError)."""

    @classmethod
    def follow(cls, out_dir: Path, *, progress: bool) -> list[dict[str, Any]]:
        """Wait until none of the sweep's latest jobs is queued or running, then rewrite its tables and
        return :func:`modicl.sweep.sweep_status`; raise ConfigError when the scheduler cannot be read or
        the jobs can never start."""


# The executors a sweep can run on, as "module:class", imported on use (a sweep needs no submitit).
KINDS = {
    "local": "modicl.sweep.local:InProcess",
    "pool": "modicl.sweep.local:ProcessPool",
    "slurm": "modicl.sweep.slurm:Slurm",
}


def executor_class(kind: str) -> type[Executor]:
    """The executor class registered as ``kind`` in :data:`KINDS`; raises KeyError for another name."""
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def remote_kinds() -> dict[str, type[RemoteExecutor]]:
    """{kind: class} of the executors in :data:`KINDS` that ``modicl sweep --executor`` offers besides
    running here: those with ``Options`` (:class:`RemoteExecutor`)."""
    classes = {kind: executor_class(kind) for kind in KINDS}
    return {kind: cls for kind, cls in classes.items() if hasattr(cls, "Options")}  # type: ignore[misc]
