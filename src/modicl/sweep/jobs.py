"""Jobs: the unit an executor runs. One run, or several runs of one architecture trained as an ensemble.

A :class:`Job` is plain data (configs and paths), so it pickles for a worker process or a cluster;
:func:`run_job` runs one anywhere and never raises for a failing point (its error goes to the point's
``error.txt``); :func:`make_jobs` groups a sweep's points into jobs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..rundir import RunDir
from .spec import Point, point_dir


@dataclass(frozen=True)
class Job:
    """Work for one executor call: one run, or several runs with the same architecture trained together.

    Plain data (config dicts and paths) so it pickles for a cluster executor."""

    points: tuple[Point, ...]
    run_dirs: tuple[Path, ...]


def job_label(job: Job) -> str:
    """A short name for a job's progress lines: its points' axis values (``n_id=64 seed=1``), else their hashes."""
    names = [
        " ".join(
            f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
            for k, v in p.axes.items()
        )
        or p.hash[:10]
        for p in job.points
    ]
    return names[0] if len(names) == 1 else f"{len(names)} runs ({names[0]}, …)"


def torch_oom() -> type[BaseException]:
    """``torch.OutOfMemoryError`` (imported on use: building a sweep needs no torch)."""
    import torch

    return torch.OutOfMemoryError


def run_job(job: Job, progress: bool | str = False) -> dict[str, str | None]:
    """Run every point of ``job`` to completion (resuming where a checkpoint exists): alone when the job
    has one point, else as one ensemble (:func:`modicl.ensemble.train_ensemble`). Returns {hash: None on
    success, else a one-line error, also written to RUN_DIR/error.txt}. An ensemble that runs out of
    device memory trains its members one by one instead. Never raises for a failing point (a KeyboardInterrupt
    still stops it: the checkpoints are kept for the next launch). ``progress`` as in :func:`modicl.training.train`."""
    from .. import training as train_mod
    from ..ensemble import train_ensemble
    from ..runlock import RunLocked

    done = [RunDir(d).status() == "done" for d in job.run_dirs]
    out: dict[str, str | None] = {p.hash: None for p, finished in zip(job.points, done) if finished}
    todo = []
    for p, d, finished in zip(job.points, job.run_dirs, done):
        if finished:
            continue
        if RunDir(d).is_locked():  # leave its directory alone: another process is training this point
            out[p.hash] = f"RunLocked: {d} is being trained by another process"
        else:
            todo.append((p, d))
    if len(todo) == 1:
        point, run_dir = todo[0]
        status = RunDir(run_dir).prepare()
        try:
            train_mod.train(point.config, run_dir, resume=status == "interrupted", progress=progress)
            out[point.hash] = None
        except RunLocked as e:  # taken between the check and the start: not this job's failure to record
            out[point.hash] = f"RunLocked: {e}"
        except Exception as e:  # one failing point must not stop the sweep
            out[point.hash] = RunDir(run_dir).record_failure(e)
    elif todo:
        for _, run_dir in todo:
            RunDir(run_dir).prepare()
        try:
            errors = train_ensemble([p.config for p, _ in todo], [d for _, d in todo], resume=True, progress=progress)
        except torch_oom() as e:  # the estimate was wrong for this device: train the members one by one
            warnings.warn(
                f"an ensemble of {len(todo)} ran out of memory ({str(e)[:200]}); training its members one by one",
                stacklevel=2,
            )
            for p, _ in todo:
                out.update(run_job(Job((p,), (job.run_dirs[job.points.index(p)],)), progress=progress))
            return out
        except Exception as e:  # the shared step failed: every member failed with it
            errors = [e] * len(todo)
        for (point, run_dir), err in zip(todo, errors):
            if isinstance(err, BaseException):
                err = RunDir(run_dir).record_failure(err)
            elif err is not None and not err.startswith("RunLocked:"):
                RunDir(run_dir).write_error(err)
            out[point.hash] = err
    return out


def with_threads(job: Job, threads: int) -> Job:
    """``job`` with ``train.threads`` set on every point (an execution-only field: hashes are unchanged)."""
    pts = tuple(
        dataclasses.replace(
            p, config=dataclasses.replace(p.config, train=dataclasses.replace(p.config.train, threads=threads))
        )
        for p in job.points
    )
    return Job(pts, job.run_dirs)


def make_jobs(
    points: Sequence[Point],
    out_dir: Path,
    ensemble: bool = True,
    max_members: int = 64,
    memory_budget: int | None = None,
) -> list[Job]:
    """Jobs for ``points``: with ``ensemble``, points that can share an ensemble
    (:func:`modicl.ensemble.ensemble_key`) are grouped in grid order, at most
    :func:`modicl.memory.ensemble_capacity` members per job (≤ ``max_members``; 1 for models whose step
    is not overhead-bound, such as the paper's, and as many as fit in ``memory_budget`` bytes, default
    :func:`modicl.memory.memory_budget`); otherwise one job per point."""
    from ..ensemble import ensemble_key
    from ..memory import ensemble_capacity
    from ..memory import memory_budget as device_budget

    if not ensemble:
        return [Job((p,), (point_dir(out_dir, p.hash),)) for p in points]
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(ensemble_key(p.config), []).append(p)
    budget = device_budget() if memory_budget is None and points else (memory_budget or 0)
    jobs = []
    for members in groups.values():
        size = ensemble_capacity(
            members[0].config, budget, *_planned_device(members[0].config), max_members=max_members
        )
        for i in range(0, len(members), size):
            chunk = tuple(members[i : i + size])
            jobs.append(Job(chunk, tuple(point_dir(out_dir, p.hash) for p in chunk)))
    return jobs


def _planned_device(cfg: RunConfig) -> tuple[Any, str]:
    """(compute dtype, device type) a point will most likely train with, for the memory estimate: its
    device, or CUDA when this machine has one; on a machine without CUDA the CPU's (explicit attention,
    the larger estimate)."""
    import torch

    from ..runtime import resolve_dtype

    name = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    return resolve_dtype(cfg.train.dtype, device), device.type
