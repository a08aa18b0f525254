"""Checkpoint history: which evaluation steps keep a checkpoint of their own, and how checkpoints are named.

Besides ``last`` (rewritten at every evaluation, for ``--resume``) and ``best_ood`` (selected on the
validation o.o.d. tasks), a run keeps the checkpoints its ``train.keep_checkpoints`` schedule names, so a
transient phase (PAPER.md §3, Fig. 3b: o.o.d. accuracy that rises and falls again) can be opened up
after the fact and a run can be branched from any of them (:func:`modicl.branch.branch_run`).

Schedules (``train.keep_checkpoints``):
    ``none``           only ``last`` and ``best_ood`` (the default);
    ``all``            every evaluation;
    ``log``            step 0 and the first evaluation at or after each power of two (log-spaced);
    ``every:N``        every evaluation at a multiple of N steps (N a multiple of ``train.eval_every``);
    ``log+every:N``    both.
A kept checkpoint is named ``step:N`` on the command line and stored as ``checkpoints/step-NNNNNNN.*``
(weights, sidecar and optimizer / data-stream state, 2–3× the weights' size; the README gives sizes).

No torch and nothing of modicl beyond the config error: the config validates schedules with it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .signals import signals_held

# The two checkpoints every run keeps: its latest evaluation, and the one selected on the validation o.o.d.
# tasks (early stopping); BEST_OOD also names the early-stop metrics in summary.json and the results tables.
LAST, BEST_OOD = "last", "best_ood"
FIXED = (LAST, BEST_OOD)
_STEP_REF = re.compile(r"step[:\-](\d+)")


class ScheduleError(ValueError):
    """A ``train.keep_checkpoints`` value that is not a schedule; the message says what to write."""


@dataclass(frozen=True)
class KeepSchedule:
    """A parsed ``train.keep_checkpoints``: keep every evaluation (``all``), log-spaced ones (``log``),
    and / or multiples of ``every`` steps (0: none)."""

    all: bool = False
    log: bool = False
    every: int = 0


def parse_schedule(text: str, eval_every: int) -> KeepSchedule:
    """``"log+every:1000"`` → KeepSchedule(log=True, every=1000).

    Raises:
        ScheduleError: an unknown part, a non-positive N, or N not a multiple of ``eval_every``
            (checkpoints are written at evaluations only).
    """
    usage = "use none, all, log, every:N or log+every:N (N a multiple of train.eval_every)"
    if text == "none":
        return KeepSchedule()
    if text == "all":
        return KeepSchedule(all=True)
    log, every = False, 0
    for part in text.split("+"):
        m = re.fullmatch(r"every:(\d+)", part)
        if part == "log" and not log:
            log = True
        elif m and not every and int(m.group(1)) > 0:
            every = int(m.group(1))
        else:
            raise ScheduleError(f"train.keep_checkpoints = {text!r} is not a schedule; {usage}")
    if every % eval_every:
        raise ScheduleError(
            f"train.keep_checkpoints every:{every} is not a multiple of train.eval_every ({eval_every}); "
            f"checkpoints are written at evaluations, so use every:{max(1, round(every / eval_every)) * eval_every}"
        )
    return KeepSchedule(log=log, every=every)


def keeps(step: int, eval_every: int, schedule: KeepSchedule) -> bool:
    """Whether the evaluation at ``step`` keeps a checkpoint of its own. Evaluations happen at multiples of
    ``eval_every`` and at the final step; ``log`` keeps step 0 and every evaluation whose interval since
    the previous evaluation contains a power of two (2^k in (previous, step])."""
    if schedule.all or (schedule.every and step % schedule.every == 0):
        return True
    if schedule.log:
        previous = ((step - 1) // eval_every) * eval_every  # the evaluation before this one
        return step == 0 or previous < 1 or step.bit_length() > previous.bit_length()
    return False


def file_stem(ref: str) -> str:
    """The file stem of checkpoint ``ref``: ``last`` and ``best_ood`` as they are, ``step:N`` (or
    ``step-N``) → ``step-NNNNNNN``. Raises ScheduleError for anything else."""
    if ref in FIXED:
        return ref
    m = _STEP_REF.fullmatch(ref)
    if not m:
        raise ScheduleError(f"checkpoint {ref!r} is not a checkpoint name; use last, best_ood or step:N")
    return f"step-{int(m.group(1)):07d}"


def ref_of(stem: str) -> str:
    """Inverse of :func:`file_stem`: ``step-0000500`` → ``step:500``; other stems as they are."""
    step = step_of(stem)
    return stem if step is None else f"step:{step}"


def step_of(stem: str) -> int | None:
    """The step of a history checkpoint's stem (``step-0000500`` → 500), None for ``last`` / ``best_ood``."""
    m = _STEP_REF.fullmatch(stem)
    return int(m.group(1)) if m else None


# A checkpoint's files, the sidecar last: a reader that finds the sidecar finds the rest.
_KINDS = ("state.pt", "safetensors", "json")


def keep_copy(checkpoints: Path, src: str, step: int) -> None:
    """Keep checkpoint ``src`` (just written) as ``step:N``: hard links where the file system allows
    (no bytes copied; ``src`` is later replaced by rename, so the kept files never change), else copies."""
    dst = file_stem(f"step:{step}")
    staged = []
    for kind in _KINDS:
        a, b = checkpoints / f"{src}.{kind}", checkpoints / f"{dst}.{kind}"
        if not a.exists():
            continue
        tmp = b.with_name(b.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(a, tmp)
        except OSError:
            shutil.copyfile(a, tmp)
        staged.append((tmp, b))
    with signals_held():  # all of the kept checkpoint's files, or none of them (signals.py)
        for tmp, b in staged:
            os.replace(tmp, b)


def kept_steps(checkpoints: Path) -> list[int]:
    """Steps of the history checkpoints in a run's ``checkpoints`` folder, ascending."""
    if not checkpoints.is_dir():
        return []
    return sorted(
        s for s in (step_of(p.name.removesuffix(".json")) for p in checkpoints.glob("step-*.json")) if s is not None
    )
