"""The run directory on disk: config, task lists, metrics log, checkpoints, summary, status.

:class:`RunDir` is the only place that knows the layout (DESIGN.md "On disk")::

    RUN_DIR/config.json            resolved RunConfig (everything needed to re-run)
    RUN_DIR/tasks.json             the pre-training and o.o.d. task vectors and the input split, as used
    RUN_DIR/metrics.jsonl          one JSON line per evaluation, appended as training goes
    RUN_DIR/sessions.jsonl         one JSON line per process that trained the run (host, job, numerics)
    RUN_DIR/checkpoints/{last,best_ood}.safetensors   model weights (the tied embedding stored once)
    RUN_DIR/checkpoints/{last,best_ood}.json          sidecar: step, config, task lists, metrics, version
    RUN_DIR/checkpoints/last.state.pt                 optimizer and data-stream state, for --resume
    RUN_DIR/checkpoints/step-NNNNNNN.*                the kept history (train.keep_checkpoints): all three files
    RUN_DIR/parent.json            a branched run's parent run, step and changed fields (:mod:`modicl.branch`)
    RUN_DIR/summary.json           final and best-o.o.d. metrics, phase, wall time, tokens/s
    RUN_DIR/error.txt              a failed attempt: the one-line error, a blank line, the traceback
    RUN_DIR/plots/                 learning_curves.png, attention_progress.png, kshot.png
    RUN_DIR/eval/                  CHECKPOINT.json and kshot_CHECKPOINT.png of ``modicl eval``
    RUN_DIR/.lock                  held while a process trains the run (:mod:`modicl.runlock`)

A run is done when it holds summary.json, failed when it holds error.txt, interrupted when it holds a
checkpoint but neither, and new otherwise (:meth:`RunDir.status`). Every file is written to a temporary name and
renamed, so a crash never leaves a half-written file; a
write that fails (disk full, file too large, no permission) removes its temporary files and raises
:class:`WriteError` naming the file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import traceback
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .config import ConfigError, RunConfig, from_dict, to_dict
from .history import ScheduleError, file_stem, ref_of, step_of
from .runlock import LOCK_NAME, is_locked, lock_run
from .signals import signals_held
from .version import __version__

if TYPE_CHECKING:  # torch and the model load on use: a sweep's status needs neither
    import torch

    from .model import Transformer
    from .tasks import TaskSet


class CheckpointError(ConfigError):
    """A missing or unreadable checkpoint; the message says which file and what to do."""


class WriteError(OSError):
    """A file of a run could not be written (disk full, file too large, no permission); ``filename``
    names it, ``strerror`` says why. Temporary files are removed before it is raised."""


def _write_failed(path: Path, e: OSError, tmps: list[Path]) -> WriteError:
    for t in tmps:
        t.unlink(missing_ok=True)
    return WriteError(e.errno, e.strerror or str(e), str(path))


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp)`` to write ``path``'s content to ``path.tmp``, then rename it to ``path``: a reader
    never sees a partial file. Raises WriteError (an OSError) naming ``path`` when the write fails; the
    temporary file is removed and an existing ``path`` is left as it was."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _write_failed(path, e, [tmp]) from None


_ENTRY_NAMES: set[str] = set()  # the names of a run directory's entries (what --overwrite may delete)


def _entry(name: str, doc: str) -> property:
    _ENTRY_NAMES.add(name)
    return property(lambda self: self.path / name, doc=f"RUN_DIR/{name}: {doc}.")


@dataclass(frozen=True, init=False)
class RunDir:
    """A run directory: where each of its files lives, and its state on disk. Every other module asks
    this class (or the functions below) for a run's files instead of spelling their names."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    config = _entry("config.json", "the resolved RunConfig")
    tasks = _entry("tasks.json", "the task vectors and the input split, as used")
    metrics = _entry("metrics.jsonl", "one JSON line per evaluation")
    sessions = _entry("sessions.jsonl", "one JSON line per process that trained the run")
    summary = _entry("summary.json", "final and best-o.o.d. metrics, written when the run ends")
    error = _entry("error.txt", "a failed attempt's one-line error, a blank line, its traceback")
    checkpoints = _entry("checkpoints", "weights, sidecars and the resume state")
    plots = _entry("plots", "the run's figures")
    evals = _entry("eval", "modicl eval's CHECKPOINT.json and kshot_CHECKPOINT.png")
    analysis = _entry("analysis", "modicl analyze's default output directory")
    parent = _entry("parent.json", "a branch's parent run, branch step and changed fields (modicl.branch)")

    def checkpoint(self, name: str = "last", kind: str = "safetensors") -> Path:
        """A file of checkpoint ``name``: ``kind`` is safetensors (weights), json (sidecar) or state.pt."""
        return self.checkpoints / f"{name}.{kind}"

    def holds_other_files(self) -> bool:
        """True for a directory that holds something (the training lock aside) but no modicl run."""
        return (
            self.path.is_dir()
            and bool({e.name for e in self.path.iterdir()} - _RUN_SCAFFOLD)
            and not is_run_dir(self.path)
        )

    def has_checkpoint(self, name: str = "last") -> bool:
        """True when the weights of checkpoint ``name`` exist."""
        return self.checkpoint(name).exists()

    def status(self) -> str:
        """``done`` (summary.json written), ``failed`` (error.txt from an earlier attempt),
        ``interrupted`` (a checkpoint, no summary) or ``new``."""
        if self.summary.exists():
            return "done"
        if self.error.exists():
            return "failed"
        if self.has_checkpoint():
            return "interrupted"
        return "new"

    def prepare(self) -> str:
        """Make the directory ready to train and return how: ``interrupted`` (resume from its checkpoint;
        also a failed attempt that left one, e.g. a cluster job that timed out too often or lost its node)
        or ``new`` (a directory without a checkpoint is cleared); ``done`` is left alone."""
        status = self.status()
        if status == "failed" and self.has_checkpoint():
            self.error.unlink()
            return "interrupted"
        if status in ("failed", "new") and self.path.exists():
            shutil.rmtree(self.path)
            return "new"
        return status

    def record_failure(self, e: BaseException) -> str:
        """Write error.txt for ``e`` (the one-line error, then the traceback); return the one line."""
        msg = f"{type(e).__name__}: {e}".splitlines()[0]
        self.write_error(msg + "\n\n" + "".join(traceback.format_exception(e)))
        return msg

    def write_error(self, text: str) -> None:
        """Write error.txt (its first line is the one-line error)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.error.write_text(text if text.endswith("\n") else text + "\n")

    def first_error(self) -> str | None:
        """The one-line error of a failed attempt, or None."""
        return self.error.read_text().splitlines()[0] if self.error.exists() else None

    def last_step(self) -> int | None:
        """The step of the last readable line of metrics.jsonl, or None."""
        if not self.metrics.exists():
            return None
        for line in reversed(self.metrics.read_bytes().splitlines()):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError):
                continue
        return None

    def read_config(self) -> RunConfig:
        """The saved config. Raises CheckpointError (missing or corrupt) or ConfigError naming the file and
        the field (a value of the wrong type, a key this version does not know)."""
        try:
            return from_dict(read_json(self.config))
        except ConfigError as e:
            raise ConfigError(f"{self.config}: {e}") from None

    def read_config_dict(self) -> dict:
        """config.json as written (a plain dict; no validation)."""
        return read_json(self.config)

    def read_summary(self) -> dict | None:
        """summary.json, or None before the run finished."""
        return json.loads(self.summary.read_text()) if self.summary.exists() else None

    def begin(self, cfg: RunConfig) -> None:
        """Start the run afresh: the directory made, earlier metrics and sessions dropped, config.json written."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics.unlink(missing_ok=True)
        self.sessions.unlink(missing_ok=True)
        write_json(self.config, to_dict(cfg))

    def write_tasks(self, tasks: TaskSet) -> None:
        """Write tasks.json (the task vectors and input split the run trains on)."""
        self.tasks.write_text(tasks.to_json())

    def read_sessions(self) -> list[dict]:
        """The lines of sessions.jsonl, one per process that trained the run, oldest first."""
        if not self.sessions.exists():
            return []
        return [json.loads(line) for line in self.sessions.read_text().splitlines() if line.strip()]

    def append_session(self, record: dict) -> None:
        """Append one line to sessions.jsonl (a process that starts or resumes the run)."""
        with self.sessions.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def lock(self) -> IO:
        """Take the training lock (:func:`modicl.runlock.lock_run`); raises RunLocked when it is held."""
        return lock_run(self.path)

    def is_locked(self) -> bool:
        """True while some process trains this run."""
        return is_locked(self.path)


# Names a run directory holds before its config.json exists: the training lock.
_RUN_SCAFFOLD = {LOCK_NAME}


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a modicl run: a config.json this modicl reads as a RunConfig."""
    try:
        RunDir(path).read_config()
    except (ConfigError, AttributeError, TypeError):
        return False
    return True


def check_run_out(run_dir: str | Path) -> None:
    """Refuse to train into a directory that holds something other than a modicl run.

    Raises:
        ConfigError: ``run_dir`` is a file, or a non-empty directory (ignoring the training lock)
            without a modicl config.json; its content would otherwise be overwritten.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run directory; choose another --out")
    if RunDir(run_dir).holds_other_files():
        raise ConfigError(f"{run_dir} is not empty and holds no modicl run; choose another --out (nothing was changed)")


def clear_run(run_dir: str | Path) -> None:
    """Empty the run directory ``run_dir`` (for ``--overwrite``) while holding its training lock, so a
    run that another process is training is never deleted under it.

    Raises:
        ConfigError: ``run_dir`` holds something other than a modicl run (see :func:`check_run_out`), or
            files a run does not write (a user's own: they are listed, nothing is deleted).
        RunLocked: another process is training it; nothing is changed.
    """
    run_dir = Path(run_dir)
    check_run_out(run_dir)
    foreign = sorted(
        e.name for e in run_dir.iterdir() if e.name not in _ENTRY_NAMES | _RUN_SCAFFOLD and not e.name.startswith(".")
    )
    if foreign:
        raise ConfigError(
            f"--overwrite would delete files modicl did not write in {run_dir}: {', '.join(foreign)}; "
            "move them out first"
        )
    with lock_run(run_dir):
        clear_dir(run_dir, keep=_RUN_SCAFFOLD)


def clear_dir(path: Path, keep: Collection[str] = frozenset()) -> None:
    """Remove every entry of directory ``path`` except the names in ``keep``."""
    for entry in path.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, lambda t: t.write_text(json.dumps(obj, indent=1)))


def read_json(path: Path) -> Any:
    """Parse a JSON file; raises CheckpointError naming the file when it is missing or corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is this a modicl run directory?") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt ({e.msg}); delete the run directory and train again") from None


def append_metrics(run_dir: Path, row: dict) -> None:
    """Append one evaluation row to metrics.jsonl and fsync it, so a crash loses no logged evaluation.
    Raises WriteError naming the file when it cannot be written."""
    path = RunDir(run_dir).metrics
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _write_failed(path, e, []) from None


def read_metrics(run_dir: Path, up_to_step: int | None = None) -> list[dict]:
    """Rows of metrics.jsonl (those with step ≤ up_to_step if given). A line that is not a JSON object
    with a step (torn by a crash mid-write) is dropped with a warning naming the file and the line."""
    path = RunDir(run_dir).metrics
    rows = []
    if path.exists():
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                row = json.loads(line)
                int(row["step"])
            except (json.JSONDecodeError, TypeError, KeyError, ValueError):
                warnings.warn(
                    f"{path}: line {i} is not a complete metrics row (torn by a crash?); it is dropped", stacklevel=2
                )
                continue
            if up_to_step is None or row["step"] <= up_to_step:
                rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop rows logged after ``step`` (written after the checkpoint a resume starts from)."""
    rows = read_metrics(run_dir, step)
    atomic_write(RunDir(run_dir).metrics, lambda t: t.write_text("".join(json.dumps(r) + "\n" for r in rows)))


def save_checkpoint(
    run_dir: Path,
    name: str,
    model: Transformer,
    cfg: RunConfig,
    tasks: TaskSet,
    step: int,
    metrics: dict | None = None,
    state: dict | None = None,
) -> None:
    """Write ``checkpoints/{name}.safetensors`` + ``{name}.json`` (+ ``{name}.state.pt`` when ``state``).

    All files are written to temporary names first and then renamed, the sidecar last, so a process
    killed while saving leaves either the old checkpoint or the new one. The renames run with the
    catchable stop signals held (:func:`signals_held`): a Ctrl-C, SIGTERM or a scheduler's SIGUSR2 whose
    Python handler raises lands after them, never between. Only an uncatchable kill (SIGKILL, a lost node)
    within the microseconds of the renames can leave a mix; :func:`load_state` detects it by the step
    recorded in both."""
    import torch
    from safetensors.torch import save

    rd = RunDir(run_dir)
    rd.checkpoints.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    sidecar = {
        "step": step,
        "modicl_version": __version__,
        "config": to_dict(cfg),
        "tasks": json.loads(tasks.to_json()),
        "metrics": metrics,
    }
    # Serialised in memory and written by Python, so a failed write is an OSError naming its cause
    # (torch.save to a path reports only "iostream error").
    staged = []
    if state is not None:
        staged.append((rd.checkpoint(name, "state.pt"), lambda: _torch_bytes({**state, "step": step})))
    staged.append((rd.checkpoint(name), lambda: save(weights, metadata={"step": str(step)})))
    staged.append((rd.checkpoint(name, "json"), lambda: json.dumps(sidecar, indent=1).encode()))
    tmps = [path.with_name(path.name + ".tmp") for path, _ in staged]
    for (path, data), tmp in zip(staged, tmps):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data())
        except OSError as e:
            raise _write_failed(path, e, tmps) from None
    with signals_held():
        for (path, _), tmp in zip(staged, tmps):
            os.replace(tmp, path)


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, CPU unless moved), its config, tasks, step and sidecar."""

    model: Transformer
    config: RunConfig
    tasks: TaskSet
    step: int
    sidecar: dict


def available(rd: RunDir) -> str:
    """The checkpoints of a run as ``--checkpoint`` spells them (``last, best_ood, step:0 … step:4000``)."""
    have = (
        sorted(
            (p.stem for p in rd.checkpoints.glob("*.safetensors")),
            key=lambda s: (-1 if step_of(s) is None else step_of(s), s),
        )
        if rd.checkpoints.exists()
        else []
    )
    names = [ref_of(s) for s in have]
    if len(names) > 8:
        names = names[:4] + ["…"] + names[-3:]
    return ", ".join(names) or "none (train first)"


def load_checkpoint(run_dir: str | Path, name: str = "last", device: str | torch.device = "cpu") -> Checkpoint:
    """Load checkpoint ``name`` of a run into a fresh model: ``last``, ``best_ood`` or a kept ``step:N``
    (:mod:`modicl.history`).

    Raises:
        CheckpointError: run directory, weights or sidecar missing or corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import build_model
    from .tasks import TaskSet, overlaps

    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise CheckpointError(f"run directory {rd.path} does not exist")
    try:
        name = file_stem(name)
    except ScheduleError as e:
        raise CheckpointError(str(e)) from None
    if not rd.has_checkpoint(name):
        raise CheckpointError(f"no checkpoint {ref_of(name)!r} in {rd.path}; available: {available(rd)}")
    path = rd.checkpoint(name, "json")
    sidecar = read_json(path)
    try:
        cfg = from_dict(sidecar["config"])
        tasks = TaskSet.from_json(json.dumps(sidecar["tasks"]))
        step = int(sidecar["step"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{path} is corrupt ({type(e).__name__}: {e}); delete it or train again") from None
    shared = overlaps(tasks)
    if shared:
        raise CheckpointError(
            f"{path}: its task lists overlap ({', '.join(shared)}), so o.o.d. numbers would include "
            "pre-training tasks or inputs; this checkpoint cannot be trusted"
        )
    model = build_model(cfg)
    try:
        weights = load_file(str(rd.checkpoint(name)))
        model.load_state_dict(weights)
    except (SafetensorError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {rd.checkpoint(name)} is corrupt or does not match its config: {first}"
        ) from None
    model.to(device).eval()
    return Checkpoint(model, cfg, tasks, step, sidecar)


# Byte size of a CPU generator's state (the Mersenne Twister's); a CUDA generator's Philox state is 16 bytes.
_CPU_GENERATOR_STATE_BYTES = 5056


def stream_device(state: dict) -> str:
    """The device type (``cpu`` or ``cuda``) whose torch.Generator drew the data stream saved in ``state`` (a
    ``*.state.pt`` dict, :func:`load_state`): as recorded in ``generator_device``, or, for checkpoints written
    before it was recorded, told by the size of the saved generator state."""
    saved = state.get("generator_device")
    if saved is None:
        saved = "cpu" if state["generator"].numel() == _CPU_GENERATOR_STATE_BYTES else "cuda"
    return str(saved)


def load_state(run_dir: Path, name: str = "last") -> dict:
    """The optimizer / data-stream / best-so-far state saved with checkpoint ``name``.

    Raises:
        CheckpointError: the state file is missing or unreadable.
    """
    import torch

    name = file_stem(name)
    path = RunDir(run_dir).checkpoint(name, "state.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing; the run cannot be resumed, train it again without --resume"
        ) from None
    except Exception as e:  # torch raises several types for a truncated file
        raise CheckpointError(f"{path} is corrupt ({type(e).__name__}); start the run again with --overwrite") from None
    saved = read_json(RunDir(run_dir).checkpoint(name, "json")).get("step")
    if "step" in state and state["step"] != saved:
        raise CheckpointError(
            f"checkpoint {name} of {run_dir} is inconsistent (state at step {state['step']}, weights at step "
            f"{saved}: killed while saving); start the run again with --overwrite"
        )
    return state
