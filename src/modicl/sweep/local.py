"""Running a sweep: :func:`run_sweep` for every executor, and the two that run on this machine.

:func:`run_sweep` expands the spec, skips finished points, groups the rest into jobs
(:mod:`modicl.sweep.jobs`) and hands them to an executor (:mod:`modicl.sweep.executor`), rewriting the
index and the results table after every job. :class:`InProcess` runs the jobs one after another in this
process; :class:`ProcessPool` in ``workers`` spawned processes, where Ctrl-C, SIGINT or SIGTERM to the
sweep process stops every worker; their checkpoints are kept for the next launch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .executor import Executor, Outcome, Record, Submission
from .jobs import Job, job_label, make_jobs, run_job, with_threads
from .spec import SweepSpec, expand, point_dir
from .status import check_sweep_dir, point_status
from .tables import tables_lock, write_index, write_results


@dataclass
class SweepReport:
    """What a sweep did: hashes per outcome, the error message of each failed point, and the jobs handed
    to a scheduler (an executor that does not wait, such as SLURM's)."""

    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    submitted: list[Submission] = field(default_factory=list)


# Sweep workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and a second
# interrupt while a worker writes its checkpoint could corrupt it. The parent stops each worker once,
# by SIGTERM, which becomes a KeyboardInterrupt inside a running job and refuses the jobs queued after it.
_WORKER: dict[str, Any] = {"running": False, "stopping": False, "parent": None}


def _on_sigterm(signum: int, frame: Any) -> None:
    _WORKER["stopping"] = True
    if _WORKER["running"]:
        raise KeyboardInterrupt
    if os.getppid() != _WORKER["parent"]:  # idle, and nobody will hand us a job or read a result
        os._exit(130)


# A worker whose sweep process died without stopping it (killed with its process group by SIGTERM, as
# `timeout` or a test runner does, or by SIGKILL) must not train on, orphaned. Both may get the same SIGTERM
# at once, so the worker's own "is my parent gone?" check after its interrupt can run before the parent has
# died; and a parent killed by SIGKILL sends nothing. So every worker watches its parent: once it is gone,
# a running job is interrupted the way SIGTERM does (its checkpoint is kept) and an idle worker exits.
PARENT_POLL_S = 0.5


def _watch_parent() -> None:
    import threading

    main = threading.main_thread().ident
    while os.getppid() == _WORKER["parent"]:
        time.sleep(PARENT_POLL_S)
    if not _WORKER["running"]:
        os._exit(130)
    assert main is not None
    signal.pthread_kill(main, signal.SIGTERM)  # -> _on_sigterm in the main thread: checkpoint, then exit


# The signal that makes a worker print its Python stack (faulthandler, from C: it works while the worker
# is stuck inside a C call). SIGQUIT, the conventional "show your threads" signal, and not one of the stop
# signals that signals_held swaps while a checkpoint is committed: Python sees faulthandler's C handler as
# SIG_DFL, so a swap restores SIG_DFL and the signal would then kill the worker without a stack.
STACK_SIGNAL = getattr(signal, "SIGQUIT", None)

# How long the workers get to stop after SIGTERM (finish the current step, release the run lock) before
# they are killed; their last checkpoint is safe either way, as every file is written to a temporary
# name and renamed.
STOP_GRACE_S = 30.0


def _worker_init(parent: int) -> None:
    """Set up a pool worker of the sweep process ``parent`` (its pid, passed in rather than read with
    getppid: a sweep killed while its workers start would otherwise leave them watching PID 1)."""
    import faulthandler

    from ..allocator import keep_freed_memory
    from ..streams import guard_process_streams

    keep_freed_memory()  # a process of our own: keep freed activations for reuse (allocator.py)
    guard_process_streams()  # a closed pipe on the sweep's stdout or stderr must not stop a job (streams.py)
    _WORKER["parent"] = parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if STACK_SIGNAL is not None:  # POSIX: a worker that does not stop shows where it is
        faulthandler.register(STACK_SIGNAL, all_threads=True)
    if hasattr(signal, "pthread_kill"):  # POSIX; elsewhere the pool's own shutdown is all there is
        import threading

        threading.Thread(target=_watch_parent, name="modicl-parent-watch", daemon=True).start()


def _process_state(pid: int) -> str:
    """The kernel's state line for ``pid`` (e.g. ``S (sleeping)``, ``Z (zombie)``), or why it is unknown."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as e:
        return f"unknown, {type(e).__name__}"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("State:")), "unknown")


def _stop_workers(pool: Any, children: set, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a pool's worker processes: SIGTERM each once, let the pool hand them their exit, and wait up to
    ``grace_s`` seconds; a worker still alive then prints its Python stack to stderr and is killed."""
    for child in children:
        child.terminate()
    pool.shutdown(wait=False, cancel_futures=True)  # refuses queued jobs; each worker exits after its current one
    # A worker has ended once its sentinel is ready. Not is_alive(): the pool's own thread may have reaped
    # the process already, and is_alive() then reports a process that no longer exists as alive.
    from multiprocessing.connection import wait as wait_ready

    deadline = time.monotonic() + grace_s
    pending = {child.sentinel: child for child in children}
    while pending and time.monotonic() < deadline:
        for sentinel in wait_ready(list(pending), max(0.0, deadline - time.monotonic())):
            pending.pop(sentinel)
    for child in pending.values():
        print(
            f"modicl sweep: worker {child.pid} did not stop within {grace_s:.0f} s of SIGTERM "
            f"(process state: {_process_state(child.pid)}); its stack follows, then it is killed",
            file=sys.stderr,
            flush=True,
        )
        if STACK_SIGNAL is not None:
            with contextlib.suppress(ProcessLookupError):  # it may have ended by itself meanwhile
                os.kill(child.pid, STACK_SIGNAL)
    if pending:
        time.sleep(0.5)  # the stacks are written by the workers' own signal handlers
    for child in pending.values():
        child.kill()
        child.join(5.0)  # a process in uninterruptible sleep may outlive SIGKILL a while; do not wait on it


def _worker_run_job(job: Job, progress: bool) -> dict[str, str | None]:
    if _WORKER["stopping"]:
        raise KeyboardInterrupt
    _WORKER["running"] = True
    try:  # workers share the sweep's stderr: named plain lines, not bars that overwrite each other
        return run_job(job, progress=job_label(job) if progress else False)
    except KeyboardInterrupt:
        if os.getppid() != _WORKER["parent"]:  # the sweep process was killed: nobody reads our result
            os._exit(130)
        raise
    finally:
        _WORKER["running"] = False


class _OnThisMachine:
    """What both executors on this machine share: they wait for their jobs, no scheduler to ask."""

    waits = True

    def check(self, out_dir: Path) -> None:
        """Nothing to check: this machine runs the jobs."""

    def active(self, out_dir: Path) -> set[str]:
        """None: a point that another process trains is refused by its run lock (:func:`run_job`)."""
        return set()

    @classmethod
    def report(cls, out_dir: Path, rows: list[dict[str, Any]]) -> None:
        """Nothing to add: a running point holds its run lock, which :func:`sweep_status` reads."""


@dataclass
class InProcess(_OnThisMachine):
    """Runs the jobs one after another in this process (points that share an architecture as one
    ensemble), with a progress bar inside each run when ``progress``."""

    progress: bool = True
    ensembles = True

    def prepare(self, jobs: list[Job]) -> list[Job]:
        """The jobs as they are (each run sets its own threads)."""
        return jobs

    def submit(self, jobs: Sequence[Job], out_dir: Path, record: Record) -> list[Submission]:
        """Run the jobs here, one after another, recording each as it ends."""
        for job in jobs:
            record(job, run_job(job, progress=self.progress))
        return []


# Spawned workers import the sweep's main module again: a script that calls run_sweep at its top level,
# not under the __main__ guard, makes every worker fail while starting, and the pool reports only that it broke.
_BROKEN_POOL_HINT = (
    "a worker process died: killed, out of memory, or started from a script that calls run_sweep "
    'outside `if __name__ == "__main__":`'
)


@dataclass
class ProcessPool(_OnThisMachine):
    """Runs the jobs in ``workers`` spawned processes, each with cpu_count / workers threads (on 2 CPU
    cores two 1-thread runs do 18 % more steps per second than one 2-thread run, BENCHMARKS.md); every
    point runs alone (no ensembles: on CPUs ensembles are a loop anyway). With ``progress`` each run writes a
    line named by its axis values every minute. Ctrl-C, SIGINT or SIGTERM to this process stops every
    worker; a worker whose sweep process dies without stopping it (SIGKILL, or SIGTERM where nothing
    handles it) stops the same way, its checkpoints kept, and exits. Raises ConfigError for ``workers`` < 1."""

    workers: int = 2
    progress: bool = True
    ensembles = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers = {self.workers} must be ≥ 1")

    def prepare(self, jobs: list[Job]) -> list[Job]:
        """The jobs with cpu_count / workers threads each."""
        threads = max(1, (os.cpu_count() or self.workers) // self.workers)
        return [with_threads(job, threads) for job in jobs]

    def submit(self, jobs: Sequence[Job], out_dir: Path, record: Record) -> list[Submission]:
        """Run the jobs in the pool, recording each as it ends; on an interrupt stop the workers and re-raise."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())  # e.g. a notebook's own pools: not ours to stop
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        ) as pool:
            futures = {pool.submit(_worker_run_job, job, self.progress): job for job in jobs}
            try:
                for fut in as_completed(futures):
                    job = futures[fut]
                    try:
                        outcome = fut.result()
                    except Exception as e:  # the worker process itself died
                        msg = f"{type(e).__name__}: {e}".splitlines()[0]
                        if isinstance(e, BrokenProcessPool):
                            msg += f" ({_BROKEN_POOL_HINT})"
                        outcome = {p.hash: msg for p in job.points}
                    record(job, outcome)
            except KeyboardInterrupt:  # Ctrl-C, or SIGINT to this process alone: stop the workers too
                _stop_workers(pool, set(multiprocessing.active_children()) - others)
                raise
        return []


def _write_tables(spec: SweepSpec, points: Sequence[Any], out_dir: Path, results: bool = True) -> None:
    with tables_lock(out_dir):  # a scheduler's jobs may rewrite them at the same time
        write_index(spec, points, out_dir)
        if results:
            write_results(points, out_dir)


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    progress: bool = True,
    ensemble: bool = True,
    workers: int = 1,
    executor: Executor | None = None,
) -> SweepReport:
    """Run (or continue) the sweep ``spec`` in ``out_dir``.

    Args:
        spec: the grid; validated before anything runs.
        out_dir: the sweep directory (created).
        progress: progress bars over grid points and within each run.
        ensemble: train points that share an architecture and training settings together
            (:mod:`modicl.ensemble`) where the executor allows it; False runs every point alone.
        workers: without ``executor``: 1 runs the jobs in this process (:class:`InProcess`), more in a
            pool of that many processes (:class:`ProcessPool`).
        executor: where the jobs run (:mod:`modicl.sweep.executor`); overrides ``workers``.
    Returns:
        A :class:`SweepReport`; the results table is in ``out_dir/results.csv`` / ``results.parquet``
        (for an executor that does not wait, such as SLURM, it fills as its jobs end).
    Raises:
        ConfigError: a spec that cannot run, or an executor that cannot run here (before any point starts).
    """
    from ..progress import progress_bar

    if executor is None:
        executor = InProcess(progress) if workers == 1 else ProcessPool(workers, progress)
    out_dir = Path(out_dir)
    points = expand(spec)
    check_sweep_dir(out_dir)
    executor.check(out_dir)
    _write_tables(spec, points, out_dir, results=False)
    report = SweepReport()
    busy = executor.active(out_dir)
    todo = []
    for p in points:
        if point_status(point_dir(out_dir, p.hash)) == "done":
            report.skipped.append(p.hash)
        elif p.hash not in busy:
            todo.append(p)
    jobs = executor.prepare(make_jobs(todo, out_dir, ensemble=ensemble and executor.ensembles))
    # beside the workers' named lines a redrawn bar would be broken up: lines too
    bar = progress_bar(
        total=len(points),
        initial=len(report.skipped),
        disable=not progress or not executor.waits,
        unit="run",
        desc=spec.name,
        position=0,
        lines=isinstance(executor, ProcessPool),
    )

    def record(job: Job, outcome: Outcome) -> None:
        for h, err in outcome.items():
            if err:
                report.failed[h] = err
            else:
                report.finished.append(h)
        bar.update(len(job.points))
        bar.set_postfix(failed=len(report.failed))
        _write_tables(spec, points, out_dir)

    try:
        report.submitted = executor.submit(jobs, out_dir, record) if jobs else []
    finally:  # an interrupt still leaves an index that says which points are interrupted
        bar.close()
        _write_tables(spec, points, out_dir, results=False)
    if executor.waits:
        _write_tables(spec, points, out_dir)
    return report
