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
executor other than the in-process one only has to run ``run_job`` somewhere else. Points that differ
only in their data (n_id, α, seed, …) form one job and train together as an ensemble
(:mod:`modicl.ensemble`) unless ``ensemble=False``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import json
import os
import shutil
import signal
import sys
import traceback
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PARTS, ConfigError, RunConfig, config_hash, preset, validate, without_execution

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Columns every results row has, under short names; other axes keep their full field name.
_SHORT = {"task.p", "task.n_id", "task.alpha", "model.n_layers", "seed"}


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs.

    Attributes:
        name: shown in messages and written to ``OUT/spec.json``.
        preset: the starting config (see ``modicl.config.PRESETS``).
        set: field → value applied to every point.
        axes: field → list of values; the grid is their product, in the order given.
        zip: fields whose equal-length value lists vary together as one more axis (e.g. n_id with a
            batch size that stays a multiple of it).
        base: a starting config that replaces ``preset`` (for notebook use; not expressible in TOML).
    """

    name: str
    preset: str = "quick"
    set: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    base: RunConfig | None = None


@dataclass(frozen=True)
class Point:
    """One grid point: its axis values, resolved config and directory name."""

    axes: dict[str, Any]
    config: RunConfig
    hash: str


@dataclass(frozen=True)
class Job:
    """Work for one executor call: one run, or several runs with the same architecture trained together.

    Plain data (config dicts and paths) so it pickles for a cluster executor."""

    points: tuple[Point, ...]
    run_dirs: tuple[Path, ...]


@dataclass
class SweepReport:
    """What a sweep did: hashes per outcome, and the error message of each failed point."""

    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _field_types() -> dict[str, Any]:
    types = {}
    for part, cls in PARTS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            types[f"{part}.{f.name}"] = hints[f.name]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name not in PARTS:
            types[f.name] = hints[f.name]
    return types


def resolve_field(name: str) -> str:
    """``n_id`` or ``task.n_id`` → ``task.n_id``. Raises ConfigError for an unknown or ambiguous name."""
    types = _field_types()
    name = name.replace("-", "_")
    if name in types:
        return name
    matches = [k for k in types if k.split(".")[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"field {name!r} is ambiguous; write one of {', '.join(matches)}")
    import difflib

    short = {k.split(".")[-1]: k for k in types}
    close = difflib.get_close_matches(name, list(types) + list(short), n=1)
    hint = f"; did you mean {short.get(close[0], close[0])}?" if close else ""
    raise ConfigError(f"unknown config field {name!r}{hint}")


def _coerce(path: str, value: Any) -> Any:
    tp = _field_types()[path]
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path} = {value!r}; choose one of {', '.join(map(str, typing.get_args(tp)))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} = {value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} = {value!r} must be a number")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{path} = {value!r} must be a string")
    return value


def with_field(cfg: RunConfig, path: str, value: Any) -> RunConfig:
    """A copy of ``cfg`` with the (resolved) field ``path`` set to ``value``, type-checked."""
    path = resolve_field(path)
    value = _coerce(path, value)
    if "." not in path:
        return dataclasses.replace(cfg, **{path: value})
    part, name = path.split(".")
    return dataclasses.replace(cfg, **{part: dataclasses.replace(getattr(cfg, part), **{name: value})})


def point_hash(cfg: RunConfig) -> str:
    """Hash of ``cfg`` with the execution-only fields at their defaults: the point's directory name."""
    return config_hash(without_execution(cfg))


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(spec: SweepSpec) -> list[Point]:
    """The grid points of ``spec``, validated. Raises ConfigError (one line, naming the point) for an
    unknown preset or field, an empty axis, a mistyped value, a config that cannot work, or two
    points with the same config."""
    base = spec.base if spec.base is not None else preset(spec.preset)
    for path, value in spec.set.items():
        base = with_field(base, path, value)
    axes: dict[str, list[Any]] = {}
    for name, values in spec.axes.items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"axis {name!r} of sweep {spec.name!r} must be a list of values, got {values!r}")
        if len(values) == 0:
            raise ConfigError(f"axis {name!r} of sweep {spec.name!r} is empty; give it at least one value")
        axes[resolve_field(name)] = list(values)
    zipped = {resolve_field(k): list(v) if isinstance(v, (list, tuple)) else v for k, v in spec.zip.items()}
    lengths = {len(v) if isinstance(v, list) else -1 for v in zipped.values()}
    if zipped and (len(lengths) != 1 or lengths & {0, -1}):
        raise ConfigError(f"the zip axes of sweep {spec.name!r} ({', '.join(zipped)}) need non-empty value lists of one length")
    overlap = set(axes) & set(zipped)
    if overlap:
        raise ConfigError(f"{', '.join(sorted(overlap))} is both an axis and a zip axis of sweep {spec.name!r}; keep one "
                          "(--axis cannot replace a zip axis: write the grid as a TOML spec)")
    # A fixed value that an axis then overwrites would be ignored without a word.
    fixed = {resolve_field(k): k for k in spec.set}
    clash = sorted(set(fixed) & (set(axes) | set(zipped)))
    if clash:
        f = clash[0]
        hint = f"--axis {f}=VALUE" if f in axes else "a TOML spec without that zip axis"
        raise ConfigError(f"{f} is fixed by set ({spec.set[fixed[f]]!r}) and is also an axis of sweep {spec.name!r}; "
                          f"to fix it, use {hint} instead")
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    points, seen = [], {}
    for combo, extra in itertools.product(itertools.product(*axes.values()), zip_rows):
        values = {**dict(zip(axes, combo)), **extra}
        cfg = base
        for path, value in values.items():
            cfg = with_field(cfg, path, value)
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()) or "the base config"
        try:
            validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"grid point {label}: {e}") from None
        h = point_hash(cfg)
        if h in seen:
            raise ConfigError(f"grid points {seen[h]} and {label} are the same config; remove the duplicate axis value")
        seen[h] = label
        points.append(Point(values, cfg, h))
    return points


def load_spec(source: str | Path, *, overrides: dict[str, Any] | None = None, axes: dict[str, list[Any]] | None = None) -> SweepSpec:
    """A built-in spec (see :data:`BUILTIN`) or a TOML file, with optional extra ``overrides`` and axes
    (which replace axes of the same field). Raises ConfigError for a missing or malformed file or
    unknown top-level keys."""
    if str(source) in BUILTIN:
        spec = BUILTIN[str(source)]
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"sweep spec {source!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
        unknown = set(data) - {"name", "preset", "set", "axes", "zip"}
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; a spec has name, preset, [set], [axes] and [zip]")
        if not all(isinstance(data.get(k, {}), dict) for k in ("set", "axes", "zip")):
            raise ConfigError(f"{path}: [set], [axes] and [zip] must be tables")
        spec = SweepSpec(name=data.get("name", path.stem), preset=data.get("preset", "quick"),
                         set=dict(data.get("set", {})), axes=dict(data.get("axes", {})), zip=dict(data.get("zip", {})))
    if overrides:
        spec = dataclasses.replace(spec, set={**spec.set, **overrides})
    if axes:
        merged = {resolve_field(k): v for k, v in spec.axes.items()}
        merged.update({resolve_field(k): v for k, v in axes.items()})
        # An axis given here also replaces the spec's fixed value of that field (phase-diagram fixes depth 6).
        kept = {k: v for k, v in spec.set.items() if resolve_field(k) not in merged}
        spec = dataclasses.replace(spec, set=kept, axes=merged)
    return spec


def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """``"n_id=8,16,32"`` → ``("n_id", [8, 16, 32])``; values are parsed as TOML scalars (bare words as
    strings). Raises ConfigError for text without ``=`` or an empty value list."""
    if "=" not in text:
        raise ConfigError(f"{text!r} is not FIELD=VALUE[,VALUE…]")
    name, raw = text.split("=", 1)
    values = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(tomllib.loads(f"v = {item}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(item)
    if not values:
        raise ConfigError(f"{name.strip()!r} has no values in {text!r}")
    return name.strip(), values


# --------------------------------------------------------------------------------------------- status


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


# Sweep workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and a second
# interrupt while a worker writes its checkpoint could corrupt it. The parent stops each worker once,
# by SIGTERM, which becomes a KeyboardInterrupt inside a running job and refuses the jobs queued after it.
_WORKER: dict[str, Any] = {"running": False, "stopping": False, "parent": None}


def _on_sigterm(signum: int, frame: Any) -> None:
    _WORKER["stopping"] = True
    if _WORKER["running"]:
        raise KeyboardInterrupt


def _worker_init() -> None:
    from .allocator import keep_freed_memory

    keep_freed_memory()  # a process of our own: keep freed activations for reuse (allocator.py)
    _WORKER["parent"] = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _worker_run_job(job: Job) -> dict[str, str | None]:
    if _WORKER["stopping"]:
        raise KeyboardInterrupt
    _WORKER["running"] = True
    try:
        return run_job(job)
    except KeyboardInterrupt:
        if os.getppid() != _WORKER["parent"]:  # the sweep process was killed: nobody reads our result
            os._exit(130)
        raise
    finally:
        _WORKER["running"] = False


def torch_oom() -> type[BaseException]:
    """``torch.OutOfMemoryError`` (imported on use: building a sweep needs no torch)."""
    import torch

    return torch.OutOfMemoryError


def run_job(job: Job, progress: bool = False) -> dict[str, str | None]:
    """Run every point of ``job`` to completion (resuming where a checkpoint exists): alone when the job
    has one point, else as one ensemble (:func:`modicl.ensemble.train_ensemble`). Returns {hash: None on
    success, else a one-line error, also written to RUN_DIR/error.txt}. An ensemble that runs out of
    device memory trains its members one by one instead. Never raises for a failing point (a KeyboardInterrupt still stops it: the checkpoints are kept for the next launch)."""
    from . import train as train_mod
    from .ensemble import train_ensemble
    from .runlock import RunLocked, is_locked

    done = [point_status(d) == "done" for d in job.run_dirs]
    out: dict[str, str | None] = {p.hash: None for p, finished in zip(job.points, done) if finished}
    todo = []
    for p, d, finished in zip(job.points, job.run_dirs, done):
        if finished:
            continue
        if is_locked(d):  # leave its directory alone: another process is training this point
            out[p.hash] = f"RunLocked: {d} is being trained by another process"
        else:
            todo.append((p, d))
    if len(todo) == 1:
        point, run_dir = todo[0]
        status = _prepare(run_dir)
        try:
            train_mod.train(point.config, run_dir, resume=status == "interrupted", progress=progress)
            out[point.hash] = None
        except RunLocked as e:  # taken between the check and the start: not this job's failure to record
            out[point.hash] = f"RunLocked: {e}"
        except Exception as e:  # one failing point must not stop the sweep
            out[point.hash] = _record_failure(run_dir, e)
    elif todo:
        for _, run_dir in todo:
            _prepare(run_dir)
        try:
            errors = train_ensemble([p.config for p, _ in todo], [d for _, d in todo], resume=True, progress=progress)
        except torch_oom() as e:  # the estimate was wrong for this device: train the members one by one
            warnings.warn(f"an ensemble of {len(todo)} ran out of memory ({str(e)[:200]}); training its members one by one")
            for p, _ in todo:
                out.update(run_job(Job((p,), (job.run_dirs[job.points.index(p)],)), progress=progress))
            return out
        except Exception as e:  # the shared step failed: every member failed with it
            errors = [e] * len(todo)
        for (point, run_dir), err in zip(todo, errors):
            if isinstance(err, BaseException):
                err = _record_failure(run_dir, err)
            elif err is not None and not err.startswith("RunLocked:"):
                (run_dir / "error.txt").write_text(err + "\n")
            out[point.hash] = err
    return out


def with_threads(job: Job, threads: int) -> Job:
    """``job`` with ``train.threads`` set on every point (an execution-only field: hashes are unchanged)."""
    pts = tuple(dataclasses.replace(p, config=dataclasses.replace(p.config, train=dataclasses.replace(p.config.train, threads=threads)))
                for p in job.points)
    return Job(pts, job.run_dirs)


def make_jobs(points: Sequence[Point], out_dir: Path, ensemble: bool = True, max_members: int = 64,
              memory_budget: int | None = None) -> list[Job]:
    """Jobs for ``points``: with ``ensemble``, points that can share an ensemble
    (:func:`modicl.ensemble.ensemble_key`) are grouped in grid order, at most
    :func:`modicl.memory.ensemble_capacity` members per job (≤ ``max_members``; 1 for models whose step
    is not overhead-bound, such as the paper's, and as many as fit in ``memory_budget`` bytes, default
    :func:`modicl.memory.memory_budget`); otherwise one job per point."""
    from .ensemble import ensemble_key
    from .memory import ensemble_capacity
    from .memory import memory_budget as device_budget

    if not ensemble:
        return [Job((p,), (out_dir / "runs" / p.hash,)) for p in points]
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(ensemble_key(p.config), []).append(p)
    budget = device_budget() if memory_budget is None and points else memory_budget
    jobs = []
    for members in groups.values():
        size = ensemble_capacity(members[0].config, budget, *_planned_device(members[0].config), max_members=max_members)
        for i in range(0, len(members), size):
            chunk = tuple(members[i:i + size])
            jobs.append(Job(chunk, tuple(out_dir / "runs" / p.hash for p in chunk)))
    return jobs


def _planned_device(cfg: RunConfig) -> tuple[Any, str]:
    """(compute dtype, device type) a point will most likely train with, for the memory estimate: its
    device, or CUDA when this machine has one; on a machine without CUDA the CPU's (explicit attention,
    the larger estimate)."""
    import torch

    from .runtime import resolve_dtype

    name = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    return resolve_dtype(cfg.train.dtype, device), device.type


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
            run_dir = out_dir / "runs" / p.hash
            w.writerow([p.hash, *(p.axes[a] for a in axes), point_status(run_dir), f"runs/{p.hash}"])
    tmp.replace(out_dir / "index.csv")


def collect_results(points: Sequence[Point], out_dir: Path):
    """The results table as a pandas DataFrame, one row per finished point (one per seed): hash, p,
    n_id, alpha, n_layers, seed, the other axes (by full field name); for the final and the
    best-o.o.d. checkpoint (selected on the validation o.o.d. tasks) and each set, the columns of
    :func:`modicl.metrics.flat_columns` (accuracies on all and on novel queries with 95 % intervals,
    counts, null models, loss); the best-o.o.d. step; the phase and its ✓/✗ pattern (final and at the
    best checkpoint); steps, wall time in seconds, and the numerics (threads, dtype, CPU kind).
    Points without summary.json are left out."""
    import pandas as pd

    from .metrics import SETS, VAL_SET, flat_columns

    rows = []
    for p in points:
        path = out_dir / "runs" / p.hash / "summary.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        cfg = p.config
        row: dict[str, Any] = {"hash": p.hash, "p": cfg.task.p, "n_id": cfg.task.n_id, "alpha": cfg.task.alpha,
                               "n_layers": cfg.model.n_layers, "seed": cfg.seed}
        row.update({k: v for k, v in p.axes.items() if k not in _SHORT})
        for which in ("final", "best_ood"):
            for st in (*SETS, VAL_SET):
                if st in s[which]:
                    row.update(flat_columns(f"{which}.{st}", s[which][st]))
        row["best_ood_step"] = s["best_ood"]["step"]
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


def load_sweep(out_dir: str | Path) -> tuple[SweepSpec, list[Point]]:
    """The spec and grid points of the sweep in ``out_dir`` (from its ``spec.json``).
    Raises ConfigError when ``out_dir`` holds no sweep or a spec this modicl version cannot read."""
    from .config import from_dict

    path = Path(out_dir) / "spec.json"
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a sweep directory (no spec.json); give the directory `modicl sweep` wrote")
    d = json.loads(path.read_text())
    try:
        base = from_dict(d.pop("base")) if d.get("base") is not None else None
        spec = SweepSpec(**{**d, "base": base})
    except TypeError as e:
        raise ConfigError(f"{path} does not match this modicl version: {e}") from None
    return spec, expand(spec)


def refresh_tables(out_dir: str | Path) -> None:
    """Rewrite ``index.csv`` and the results table of the sweep in ``out_dir`` from its run directories,
    under a file lock, so that jobs finishing at the same time on a cluster each leave a complete table."""
    out_dir = Path(out_dir)
    spec, points = load_sweep(out_dir)
    with tables_lock(out_dir):
        write_index(spec, points, out_dir)
        write_results(points, out_dir)


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    progress: bool = True,
    ensemble: bool = True,
    workers: int = 1,
    executor: Callable[[Job], dict[str, str | None]] | None = None,
) -> SweepReport:
    """Run (or continue) the sweep ``spec`` in ``out_dir``.

    Args:
        spec: the grid; validated before anything runs.
        out_dir: the sweep directory (created).
        progress: progress bars over grid points and within each run.
        ensemble: train points that share an architecture and training settings together
            (:mod:`modicl.ensemble`); False runs every point alone.
        workers: jobs run at once in separate processes, each with cpu_count / workers threads (on 2
            CPU cores two 1-thread runs do 18 % more steps per second than one 2-thread run,
            BENCHMARKS.md); 1 runs in this process. With several workers every point runs alone (no
            ensembles): on CPUs ensembles are a loop anyway.
        executor: runs one job and returns {hash: error or None}; default: in this process.
    Returns:
        A :class:`SweepReport`; the results table is in ``out_dir/results.csv`` / ``results.parquet``.
    Raises:
        ConfigError: a spec that cannot run (before any point starts).
    """
    from .progress import progress_bar

    out_dir = Path(out_dir)
    points = expand(spec)
    check_sweep_dir(out_dir)
    write_index(spec, points, out_dir)
    report = SweepReport()
    todo = []
    for p in points:
        if point_status(out_dir / "runs" / p.hash) == "done":
            report.skipped.append(p.hash)
        else:
            todo.append(p)
    if workers < 1:
        raise ConfigError(f"workers = {workers} must be ≥ 1")
    jobs = make_jobs(todo, out_dir, ensemble=ensemble and workers == 1)
    bar = progress_bar(total=len(points), initial=len(report.skipped), disable=not progress, unit="run", desc=spec.name, position=0)

    def record(job: Job, outcome: dict[str, str | None]) -> None:
        for h, err in outcome.items():
            if err:
                report.failed[h] = err
            else:
                report.finished.append(h)
        bar.update(len(job.points))
        bar.set_postfix(failed=len(report.failed))
        write_index(spec, points, out_dir)
        write_results(points, out_dir)

    try:
        if workers == 1:
            run = executor or (lambda job: run_job(job, progress=progress))
            for job in jobs:
                record(job, run(job))
        else:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor, as_completed

            threads = max(1, (os.cpu_count() or workers) // workers)
            ctx = multiprocessing.get_context("spawn")
            others = set(multiprocessing.active_children())  # e.g. a notebook's own pools: not ours to stop
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(_worker_run_job, with_threads(job, threads)): job for job in jobs}
                try:
                    for fut in as_completed(futures):
                        job = futures[fut]
                        try:
                            outcome = fut.result()
                        except Exception as e:  # the worker process itself died
                            outcome = {p.hash: f"{type(e).__name__}: {e}".splitlines()[0] for p in job.points}
                        record(job, outcome)
                except KeyboardInterrupt:  # Ctrl-C, or SIGINT to this process alone: stop the workers too
                    for child in set(multiprocessing.active_children()) - others:
                        child.terminate()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:  # an interrupt still leaves an index that says which points are interrupted
        bar.close()
        write_index(spec, points, out_dir)
    write_index(spec, points, out_dir)
    write_results(points, out_dir)
    return report


# ---------------------------------------------------------------------------------------- built-ins

def _quick_grid(name: str, preset_name: str) -> SweepSpec:
    """The reduced CPU phase diagram's 4 n_id × 3 α grid on a quick preset (batch zipped with n_id)."""
    return SweepSpec(name, preset=preset_name, axes={"task.alpha": [0.4, 0.6, 0.8]},
                     zip={"task.n_id": [8, 16, 24, 32], "train.batch_size": [64, 64, 72, 64]})


BUILTIN: dict[str, SweepSpec] = {
    # PAPER.md §3 Fig. 1b / Fig. 3 (depth 6 in the paper; the depth is an axis to override): 7 × 7 runs of
    # the paper config, for a GPU.
    "phase-diagram": SweepSpec(
        "phase-diagram", preset="paper", set={"model.n_layers": 6},
        axes={"task.n_id": [8, 16, 32, 64, 128, 256, 512], "task.alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
    ),
    # The phase diagram reduced to fit 2 CPU cores: the quick-depth2 preset (seed 3, 14 000 steps of a depth-2,
    # d_model-64 model), 4 values of n_id up to the critical n_id of the quick presets (docs/quick-preset.md)
    # × 3 of α: 12 runs of ≈ 8 min, 48.5 min on 2 cores with --workers 2 (docs/REPRODUCTION.md). The batch
    # stays a multiple of n_id. (n_id 40 cannot be placed by the rectangular rule at p = 7 for every seed.)
    "quick-phase-diagram": _quick_grid("quick-phase-diagram", "quick-depth2"),
    # The same grid on the depth-4 quick preset (seed 2, 6 000 steps): ≈ 72 min on 2 cores (docs/REPRODUCTION.md).
    "quick-phase-diagram-d4": _quick_grid("quick-phase-diagram-d4", "quick"),
    # The depth claim on the CPU preset (PAPER.md §3): the quick preset (n_id 32, α 0.8, seed 2) at depths 1, 2, 4, 6.
    # Depth 4 is the same config, hence the same run directory name, as the α = 0.8, n_id = 32 point above.
    "quick-depth": SweepSpec("quick-depth", preset="quick", axes={"model.n_layers": [1, 2, 4, 6]}),
    # PAPER.md §3 depth study: o.o.d. accuracy against n_id for depths 1, 2, 4, 6 at α = 0.6, for a GPU.
    "depth": SweepSpec(
        "depth", preset="paper", set={"task.alpha": 0.6},
        axes={"model.n_layers": [1, 2, 4, 6], "task.n_id": [32, 64, 128, 256, 512]},
    ),
}
