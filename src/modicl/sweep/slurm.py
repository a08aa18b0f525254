"""The SLURM executor (:mod:`modicl.sweep.executor`), through submitit: submit, follow, report per-point state.

:class:`Slurm` sends the jobs of a sweep (:class:`modicl.sweep.Job`: one run, or an ensemble of runs
that share an architecture) to SLURM as one job array (:func:`submit_sweep` is
:func:`modicl.sweep.run_sweep` with it); each array task runs :class:`SweepTask`, which is
:func:`modicl.sweep.run_job` followed by a locked rewrite of the sweep's index and results table. The run
directories are the same as with the local executor, so finished points are skipped, interrupted ones
resume from ``checkpoints/last``, and the results table is the same table.

Requeue: a job gets SIGUSR2 ``signal_delay_s`` before its time limit (or on pre-emption); submitit then
calls :meth:`SweepTask.checkpoint`, which resubmits the same job, and requeues it (``scontrol requeue``,
at most ``max_requeues`` times). The requeued job resumes each run from its last periodic checkpoint
(every ``train.eval_every`` steps), so at most ``eval_every`` steps are redone.

SLURM's own state (queued, running) comes from ``squeue``; submitit's job watcher is not used because it
reads ``sacct``, which needs SLURM accounting, and small clusters often run without it. The array task
ids of every submission are kept in ``SWEEP_DIR/slurm/submissions.jsonl``; submitit's pickles and the
jobs' logs are in ``SWEEP_DIR/slurm/ARRAYID_TASK_*``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import ConfigError
from ..rundir import RunDir
from .executor import Record, Submission
from .jobs import Job, run_job, with_threads
from .local import run_sweep
from .spec import SweepSpec, point_dir
from .status import sweep_status
from .tables import refresh_tables

# squeue states shown as "queued" and "running"; any other state is shown in lower case.
_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


@dataclass(frozen=True)
class SlurmOptions:
    """Resources and behaviour of the SLURM jobs of a sweep (one job per sweep job, as a job array)."""

    partition: str | None = None
    """partition to submit to (None: the cluster's default partition)."""
    gpus_per_job: int = 0
    """GPUs per job (runs and ensembles use CUDA when one is present)."""
    cpus_per_job: int = 2
    """CPUs per job; training uses this many threads."""
    time: str = "6:00:00"
    """time limit per job, in SLURM's formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    mem_gb: float | None = None
    """memory per job in GB (None: the partition's default)."""
    array_parallelism: int = 64
    """at most this many jobs of the array run at once."""
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_delay_s: int = 90
    """seconds before the time limit at which a job requeues itself (it resumes from its checkpoints)."""
    max_requeues: int = 3
    """how many times a job may requeue itself after a time-out."""
    setup: tuple[str, ...] = ()
    """shell lines run before python in each job, e.g. 'module load cuda'."""


def time_minutes(text: str) -> int:
    """A SLURM time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in whole
    minutes, rounded up. Raises ConfigError for anything else or a limit of zero."""
    days, rest = 0, text.strip()
    try:
        if "-" in rest:
            d, rest = rest.split("-", 1)
            days = int(d)
            parts = [int(x) for x in rest.split(":")]
            if not 1 <= len(parts) <= 3:
                raise ValueError
            h, m, s = (parts + [0, 0])[:3]
        else:
            parts = [int(x) for x in rest.split(":")]
            if len(parts) == 1:
                h, m, s = 0, parts[0], 0
            elif len(parts) == 2:
                h, m, s = 0, parts[0], parts[1]
            elif len(parts) == 3:
                h, m, s = parts
            else:
                raise ValueError
        if min(days, h, m, s) < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--slurm.time {text!r} is not a SLURM time limit; write e.g. 90, 6:00:00 or 1-12:00:00"
        ) from None
    total = days * 1440 + h * 60 + m + -(-s // 60)
    if total < 1:
        raise ConfigError(f"--slurm.time {text!r} is zero; give the jobs time to run")
    return total


def check_slurm() -> None:
    """Raise ConfigError (one line) unless submitit is installed and a SLURM controller answers ``sinfo``."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--executor slurm needs submitit: pip install submitit (or, in a modicl checkout, pip install -e "
            "'.[slurm]')"
        ) from None
    for prog in ("sbatch", "squeue", "sinfo"):
        if shutil.which(prog) is None:
            raise ConfigError(
                f"--executor slurm needs SLURM's {prog} on PATH (run on a login node; to try it on this machine: "
                "scripts/slurm-single-node.sh start)"
            )
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ConfigError("SLURM is not reachable: sinfo did not answer within 60 s") from None
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"SLURM is not reachable: sinfo failed ({first}); is SLURM_CONF set and slurmctld running?")


class SweepTask:
    """What each SLURM job runs: :func:`modicl.sweep.run_job` on its sweep job, then a rewrite of the
    sweep's index and results table. Returns {point hash: None or the one-line error}.

    Its ``checkpoint`` method (called by submitit on time-out or pre-emption) resubmits the same call: the
    runs resume from the checkpoints in their run directories."""

    def __call__(self, job: Job, out_dir: str) -> dict[str, str | None]:
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # the job's process is ours (allocator.py)
        outcome = run_job(job, progress=False)
        refresh_tables(out_dir)
        return outcome

    def checkpoint(self, job: Job, out_dir: str):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, job, out_dir)


def _submissions_path(out_dir: Path) -> Path:
    return out_dir / "slurm" / "submissions.jsonl"


def read_submissions(out_dir: str | Path) -> dict[str, str]:
    """{point hash: the SLURM job id of its latest submission} of the sweep in ``out_dir``."""
    path = _submissions_path(Path(out_dir))
    latest: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                for h in rec["hashes"]:
                    latest[h] = rec["job_id"]
    return latest


def queue_info(job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{job id: (SLURM state, SLURM reason)} for those of ``job_ids`` (``ARRAYID_TASK`` or plain ids) that
    squeue still lists; finished jobs are absent. Raises ConfigError when squeue is missing or fails for
    another reason."""
    ids = set(job_ids)
    if not ids:
        return {}
    mains = sorted({i.split("_")[0] for i in ids})
    try:
        res = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(mains)], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"squeue failed: {e}") from None
    if res.returncode != 0:
        if "Invalid job id" in res.stderr:  # every job has left the queue
            return {}
        first = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"squeue failed: {first}; is SLURM_CONF set and slurmctld running?")
    return parse_squeue(res.stdout, ids)


def parse_squeue(text: str, job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} from the output of ``squeue -h -r -o '%i|%T|%r'`` (one array task per
    line, ``ARRAYID_TASK|STATE|REASON``), for the ids in ``job_ids`` only."""
    ids, info = set(job_ids), {}
    for line in text.splitlines():
        jid, state, reason = (line.strip().split("|") + ["", ""])[:3]
        if jid in ids:
            info[jid] = (state, reason)
    return info


def queue_states(job_ids: Iterable[str]) -> dict[str, str]:
    """{job id: SLURM state} of :func:`queue_info`."""
    return {j: st for j, (st, _) in queue_info(job_ids).items()}


def job_log(out_dir: str | Path, job_id: str) -> Path:
    """Where submitit writes the output of SLURM job ``job_id`` of the sweep in ``out_dir``."""
    return Path(out_dir) / "slurm" / job_id / f"{job_id}_0_log.out"


def _executor(out_dir: Path, opts: SlurmOptions, name: str):
    import submitit

    try:
        ex = submitit.SlurmExecutor(folder=out_dir / "slurm" / "%j", max_num_timeout=opts.max_requeues)
    except RuntimeError as e:  # no srun
        raise ConfigError(f"--executor slurm: {e}") from None
    ex.update_parameters(**slurm_parameters(opts, name))
    return ex


def slurm_parameters(opts: SlurmOptions, name: str) -> dict[str, Any]:
    """The parameters a sweep named ``name`` hands ``submitit.SlurmExecutor.update_parameters`` (its
    sbatch options: time in minutes, CPUs and GPUs per job, memory in MB, …); options left at None are
    left out, so SLURM's defaults apply. Raises ConfigError for a time limit SLURM would not read."""
    params: dict[str, Any] = {
        "job_name": f"modicl-{name}",
        "time": time_minutes(opts.time),
        "cpus_per_task": opts.cpus_per_job,
        "array_parallelism": opts.array_parallelism,
        "signal_delay_s": opts.signal_delay_s,
        "stderr_to_stdout": True,
    }
    optional = {
        "partition": opts.partition,
        "account": opts.account,
        "qos": opts.qos,
        "constraint": opts.constraint,
        "gpus_per_node": opts.gpus_per_job or None,
        "setup": list(opts.setup) or None,
        "mem": f"{int(opts.mem_gb * 1024)}MB" if opts.mem_gb else None,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _validate(opts: SlurmOptions) -> None:
    time_minutes(opts.time)
    bad = [
        f"--slurm.{k.replace('_', '-')} {v}"
        for k, v in (("cpus_per_job", opts.cpus_per_job), ("array_parallelism", opts.array_parallelism))
        if v < 1
    ]
    bad += [
        f"--slurm.{k.replace('_', '-')} {v}"
        for k, v in (
            ("gpus_per_job", opts.gpus_per_job),
            ("max_requeues", opts.max_requeues),
            ("signal_delay_s", opts.signal_delay_s),
        )
        if v < 0
    ]
    if opts.mem_gb is not None and opts.mem_gb <= 0:
        bad.append(f"--slurm.mem-gb {opts.mem_gb}")
    if bad:
        raise ConfigError(f"{', '.join(bad)}: must be positive (CPUs, array parallelism, memory) or ≥ 0")


# Reasons for which a pending job will never start without a change (sbatch accepts such jobs).
_NEVER_STARTS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidQOS",
    "InvalidAccount",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxWallDurationPerJobLimit",
}


def _ended_job_error(out_dir: Path, run_dir: Path, job_id: str) -> str | None:
    """The error of ``job_id`` when it ended without ever training ``run_dir`` (its batch script or the
    node failed before Python started); None when it trained, or never ran (cancelled while pending)."""
    log = job_log(out_dir, job_id)
    if not log.exists():
        return None
    if any(s.get("slurm_job_id") == job_id for s in RunDir(run_dir).read_sessions()):
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    last = f": {lines[-1]}" if lines else " (the log is empty)"
    return f"SLURM job {job_id} ended before training started; see {log}{last}"


@dataclass
class Slurm:
    """The SLURM executor: hands the jobs to SLURM as one job array (``opts`` per job) and returns
    without waiting; each array task rewrites the sweep's tables when it ends (:class:`SweepTask`).
    Points whose latest job is still queued or running are never submitted again. The sweep directory
    must be on a file system that the compute nodes share.

    Raises:
        ConfigError: invalid options (on construction), no submitit or SLURM unreachable (``check``),
            sbatch refusing the jobs (``submit``).
    """

    opts: SlurmOptions = SlurmOptions()
    name: str = "sweep"
    """the jobs' name in the queue is modicl-NAME."""
    ensembles = True
    waits = False
    label: ClassVar[str] = "SLURM"
    Options: ClassVar[type] = SlurmOptions

    def __post_init__(self) -> None:
        _validate(self.opts)

    def check(self, out_dir: Path) -> None:
        """:func:`check_slurm`: submitit installed, a SLURM controller answering."""
        check_slurm()

    def prepare(self, jobs: list[Job]) -> list[Job]:
        """The jobs with ``opts.cpus_per_job`` threads each."""
        return [with_threads(j, self.opts.cpus_per_job) for j in jobs]

    def active(self, out_dir: Path) -> set[str]:
        """Points whose latest SLURM job squeue still lists (queued or running)."""
        latest = read_submissions(out_dir)
        queued = queue_states(latest.values())
        return {h for h, job_id in latest.items() if job_id in queued}

    def submit(self, jobs: Sequence[Job], out_dir: Path, record: Record) -> list[Submission]:
        """Submit the jobs as one job array and note them in ``slurm/submissions.jsonl``; ``record`` is not
        called (each job rewrites the tables when it ends)."""
        ex = _executor(out_dir, self.opts, self.name)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(
                err
            ):  # submitit prints sbatch's refusal there; keep it for the one-line error
                submitted = ex.map_array(SweepTask(), list(jobs), [str(out_dir)] * len(jobs))
        except Exception as e:  # sbatch's refusal (bad partition, limits) comes as FailedJobError
            lines = [ln.strip() for ln in (err.getvalue() or str(e)).splitlines() if ln.strip()] or [type(e).__name__]
            raise ConfigError(f"sbatch refused the sweep: {lines[-1].removeprefix('sbatch: error: ')}") from None
        sys.stderr.write(err.getvalue())
        subs = [Submission(str(s.job_id), tuple(p.hash for p in j.points)) for s, j in zip(submitted, jobs)]
        path = _submissions_path(out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            for s in subs:
                fh.write(
                    json.dumps(
                        {"job_id": s.job_id, "hashes": list(s.hashes), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
                    )
                    + "\n"
                )
        return subs

    @classmethod
    def report(cls, out_dir: Path, rows: list[dict[str, Any]]) -> None:
        """Each point's latest SLURM job, its queue state (squeue) and reason, and the error of a job that
        ended before training started; when squeue cannot be read, a note that the states come from disk."""
        latest = read_submissions(out_dir)
        if not latest:
            return
        wanted = {latest[r["hash"]] for r in rows if r["state"] != "done" and r["hash"] in latest}
        queue_error = None
        try:
            queue = queue_info(wanted)
        except ConfigError as e:
            queue, queue_error = {}, f"{e}; shown from disk"
        for r in rows:
            job_id = r["job_id"] = latest.get(r["hash"])
            if r["state"] == "done" or job_id is None:
                continue
            if job_id in queue:
                q, reason = queue[job_id]
                r["state"] = "running" if q in _RUNNING else "queued" if q in _QUEUED else q.lower()
                r["error"] = None
                if r["state"] == "queued" and reason not in ("", "None", "Priority", "Resources"):
                    r["note"] = f"SLURM reason: {reason}" + (
                        " — it can never start; scancel it and re-submit with fewer resources"
                        if reason in _NEVER_STARTS
                        else ""
                    )
            elif r["state"] in ("interrupted", "new") and queue_error is None:  # not running here, not failed on disk
                r["error"] = _ended_job_error(out_dir, point_dir(out_dir, r["hash"]), job_id)
                r["state"] = "failed" if r["error"] else r["state"]
            if queue_error is not None:
                r["note"] = queue_error

    @classmethod
    def follow(cls, out_dir: Path, *, progress: bool) -> list[dict[str, Any]]:
        """:func:`wait_for_sweep` on every point's latest job, also those an earlier submission left queued
        or running."""
        return wait_for_sweep(out_dir, sorted(set(read_submissions(out_dir).values())), progress=progress)


def submit_sweep(
    spec: SweepSpec, out_dir: str | Path, opts: SlurmOptions = SlurmOptions(), *, ensemble: bool = True
) -> list[Submission]:
    """Submit the unfinished points of ``spec`` to SLURM as one job array and return without waiting
    (:func:`modicl.sweep.run_sweep` with the :class:`Slurm` executor).

    Points already done are skipped, and so are points whose latest job is still queued or running
    (re-submitting a sweep never trains a point twice at once); interrupted points resume from their
    checkpoints, failed ones start again.

    Args:
        spec: the grid (validated before anything is submitted).
        out_dir: the sweep directory; it must be on a file system that the compute nodes share.
        opts: resources per job.
        ensemble: group points that share an architecture into one job (:mod:`modicl.ensemble`).
    Returns:
        One :class:`~modicl.sweep.executor.Submission` per array task (empty when nothing is left to run).
    Raises:
        ConfigError: invalid spec or options, no submitit, SLURM unreachable, or sbatch refusing the job.
    """
    executor = Slurm(opts, spec.name)
    return run_sweep(spec, Path(out_dir).resolve(), progress=False, ensemble=ensemble, executor=executor).submitted


class JobsCannotStart(ConfigError):
    """Every job still queued waits for something SLURM will never grant."""


def wait_for_sweep(
    out_dir: str | Path, job_ids: Sequence[str], *, progress: bool = True, poll_s: float = 10.0
) -> list[dict[str, Any]]:
    """Follow ``job_ids`` until none is queued or running, with a progress bar over the sweep's points;
    then rewrite the index and results table and return :func:`sweep_status`.

    Raises:
        ConfigError: squeue fails.
        JobsCannotStart: every remaining job is pending for a reason that never clears (e.g. more CPUs
            than a node has: SLURM reason PartitionConfig); the jobs are left in the queue."""
    from ..progress import progress_bar

    out_dir = Path(out_dir)
    rows = sweep_status(out_dir)
    bar = progress_bar(total=len(rows), disable=not progress, unit="run", desc="slurm")
    try:
        while True:
            active = queue_info(job_ids)
            rows = sweep_status(out_dir)
            bar.n = sum(r["state"] in ("done", "failed") for r in rows)
            bar.set_postfix(
                running=sum(r["state"] == "running" for r in rows),
                queued=sum(r["state"] == "queued" for r in rows),
                failed=sum(r["state"] == "failed" for r in rows),
            )
            bar.refresh()
            if not active:
                break
            if all(st == "PENDING" and reason in _NEVER_STARTS for st, reason in active.values()):
                jid, (_, reason) = next(iter(sorted(active.items())))
                raise JobsCannotStart(
                    f"job {jid} and every other queued job can never start (SLURM reason: {reason}); "
                    f"scancel them ({' '.join(sorted(active))}) and re-submit with fewer resources"
                )
            time.sleep(poll_s)
    finally:
        bar.close()
    refresh_tables(out_dir)
    return sweep_status(out_dir)


__all__ = [
    "JobsCannotStart",
    "Slurm",
    "SlurmOptions",
    "SweepTask",
    "check_slurm",
    "job_log",
    "queue_info",
    "queue_states",
    "read_submissions",
    "submit_sweep",
    "time_minutes",
    "wait_for_sweep",
]
