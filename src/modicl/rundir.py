"""The run directory on disk: config, task lists, metrics log, checkpoints, summary.

Layout (DESIGN.md "On disk")::

    RUN_DIR/config.json            resolved RunConfig (everything needed to re-run)
    RUN_DIR/tasks.json             the pre-training and o.o.d. task vectors and the input split, as used
    RUN_DIR/metrics.jsonl          one JSON line per evaluation, appended as training goes
    RUN_DIR/checkpoints/{last,best_ood}.safetensors   model weights (the tied embedding stored once)
    RUN_DIR/checkpoints/{last,best_ood}.json          sidecar: step, config, task lists, metrics, version
    RUN_DIR/checkpoints/last.state.pt                 optimizer and data-stream state, for --resume
    RUN_DIR/summary.json           final and best-o.o.d. metrics, phase, wall time, tokens/s
    RUN_DIR/plots/                 learning_curves.png, kshot.png

Every file is written to a temporary name and renamed, so a crash never leaves a half-written file; a
write that fails (disk full, file too large, no permission) removes its temporary files and raises
:class:`WriteError` naming the file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import __version__
from .config import ConfigError, RunConfig, from_dict, to_dict
from .model import Transformer, build_model
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


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _write_failed(path, e, [tmp]) from None


# Names a run directory holds before its config.json exists: the training lock.
_RUN_SCAFFOLD = {".lock"}


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a modicl run: a config.json this modicl reads as a RunConfig."""
    try:
        from_dict(read_json(Path(path) / "config.json"))
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
    if run_dir.is_dir() and {e.name for e in run_dir.iterdir()} - _RUN_SCAFFOLD and not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not empty and holds no modicl run; choose another --out (nothing was changed)")


def clear_run(run_dir: str | Path) -> None:
    """Empty the run directory ``run_dir`` (for ``--overwrite``) while holding its training lock, so a
    run that another process is training is never deleted under it.

    Raises:
        ConfigError: ``run_dir`` holds something other than a modicl run (see :func:`check_run_out`).
        RunLocked: another process is training it; nothing is changed.
    """
    from .runlock import lock_run

    run_dir = Path(run_dir)
    check_run_out(run_dir)
    with lock_run(run_dir):
        clear_dir(run_dir, keep=_RUN_SCAFFOLD)


def clear_dir(path: Path, keep: set[str] = frozenset()) -> None:
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
    _atomic_write(path, lambda t: t.write_text(json.dumps(obj, indent=1)))


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
    try:
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _write_failed(run_dir / "metrics.jsonl", e, []) from None


def read_metrics(run_dir: Path, up_to_step: int | None = None) -> list[dict]:
    """Rows of metrics.jsonl (those with step ≤ up_to_step if given); a torn last line is ignored."""
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if up_to_step is None or row["step"] <= up_to_step:
                rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop rows logged after ``step`` (written after the checkpoint a resume starts from)."""
    rows = read_metrics(run_dir, step)
    _atomic_write(run_dir / "metrics.jsonl", lambda t: t.write_text("".join(json.dumps(r) + "\n" for r in rows)))


def save_checkpoint(
    run_dir: Path, name: str, model: Transformer, cfg: RunConfig, tasks: TaskSet, step: int,
    metrics: dict | None = None, state: dict | None = None,
) -> None:
    """Write ``checkpoints/{name}.safetensors`` + ``{name}.json`` (+ ``{name}.state.pt`` when ``state``).

    All files are written to temporary names first and then renamed, the sidecar last, so a process
    killed while saving leaves either the old checkpoint or the new one, except within the microseconds
    of the renames; :func:`load_state` detects that case by the step recorded in both."""
    ck = run_dir / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    sidecar = {
        "step": step, "modicl_version": __version__, "config": to_dict(cfg),
        "tasks": json.loads(tasks.to_json()), "metrics": metrics,
    }
    # Serialised in memory and written by Python, so a failed write is an OSError naming its cause
    # (torch.save to a path reports only "iostream error").
    staged = []
    if state is not None:
        staged.append((ck / f"{name}.state.pt", lambda: _torch_bytes({**state, "step": step})))
    staged.append((ck / f"{name}.safetensors", lambda: save(weights, metadata={"step": str(step)})))
    staged.append((ck / f"{name}.json", lambda: json.dumps(sidecar, indent=1).encode()))
    tmps = [path.with_name(path.name + ".tmp") for path, _ in staged]
    for (path, data), tmp in zip(staged, tmps):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data())
        except OSError as e:
            raise _write_failed(path, e, tmps) from None
    for (path, _), tmp in zip(staged, tmps):
        os.replace(tmp, path)


def _torch_bytes(obj: Any) -> bytes:
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


def load_checkpoint(run_dir: str | Path, name: str = "last", device: str | torch.device = "cpu") -> Checkpoint:
    """Load ``RUN_DIR/checkpoints/{name}`` into a fresh model.

    Raises:
        CheckpointError: run directory, weights or sidecar missing or corrupt.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    ck = run_dir / "checkpoints"
    if not (ck / f"{name}.safetensors").exists():
        have = sorted(p.stem for p in ck.glob("*.safetensors")) if ck.exists() else []
        raise CheckpointError(f"no checkpoint {name!r} in {run_dir}; available: {', '.join(have) or 'none (train first)'}")
    sidecar = read_json(ck / f"{name}.json")
    cfg = from_dict(sidecar["config"])
    tasks = TaskSet.from_json(json.dumps(sidecar["tasks"]))
    model = build_model(cfg)
    try:
        weights = load_file(str(ck / f"{name}.safetensors"))
        model.load_state_dict(weights)
    except (SafetensorError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {ck / name}.safetensors is corrupt or does not match its config: {first}") from None
    model.to(device).eval()
    return Checkpoint(model, cfg, tasks, int(sidecar["step"]), sidecar)


def load_state(run_dir: Path, name: str = "last") -> dict:
    """The optimizer / data-stream / best-so-far state saved with checkpoint ``name``.

    Raises:
        CheckpointError: the state file is missing or unreadable.
    """
    path = run_dir / "checkpoints" / f"{name}.state.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run cannot be resumed, train it again without --resume") from None
    except Exception as e:  # torch raises several types for a truncated file
        raise CheckpointError(f"{path} is corrupt ({type(e).__name__}); start the run again with --overwrite") from None
    saved = read_json(run_dir / "checkpoints" / f"{name}.json").get("step")
    if "step" in state and state["step"] != saved:
        raise CheckpointError(f"checkpoint {name} of {run_dir} is inconsistent (state at step {state['step']}, weights at step "
                              f"{saved}: killed while saving); start the run again with --overwrite")
    return state
