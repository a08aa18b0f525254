"""One trainer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock`` held while a process trains it.

Two sweeps launched on the same directory, or a local sweep beside a SLURM job, would otherwise write the
same checkpoints and metrics at once. The kernel drops the lock when the process ends, however it ends,
so a killed run never leaves a stale lock. (flock is per host on some network file systems; SLURM
re-submission avoids training a queued or running point twice by asking squeue as well.)
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from .config import ConfigError

# The lock's file name inside a run directory.
LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """The run directory is being trained by another process."""


def lock_run(run_dir: str | Path) -> IO:
    """Take the training lock of ``run_dir`` (created if missing); keep the returned file open while
    training and close it to release. Raises RunLocked when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / LOCK_NAME, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunLocked(f"{run_dir} is being trained by another process; wait for it to end or stop it") from None
    return fh


def is_locked(run_dir: str | Path) -> bool:
    """True while some process holds the training lock of ``run_dir``."""
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False
