"""Holding the catchable stop signals while a few files are committed by renames.

A Python signal handler runs between any two bytecodes of the main thread, and the ones that stop a run
raise there: Ctrl-C (KeyboardInterrupt), a kill turned into an interrupt by the CLI, and a SLURM job's
time-out or pre-emption warning (SIGUSR2; submitit's handler requeues the job and calls sys.exit inside
it). Raised between the renames that commit a checkpoint, such an exception would leave the weights of
one step beside the sidecar of another. :func:`signals_held` defers them past the commit instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# Signals whose Python handlers raise in the middle of whatever runs: Ctrl-C, a kill, and SLURM's
# time-out / pre-emption warning (submitit's handler requeues the job and exits from inside it).
_STOP_SIGNALS = tuple(
    getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP") if hasattr(signal, n)
)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold the catchable stop signals (SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP) for the duration of
    the block: one that arrives meanwhile is raised again right after it, so its own handler (or default
    action) runs then. A no-op outside the main thread, where handlers cannot be set.

    The block swaps the Python handlers instead of masking the signals: a process-directed signal that
    the main thread masks is taken by another thread (torch's pools), whose C handler still trips the
    main thread's Python handler at its next bytecode."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for s in _STOP_SIGNALS:
        handler = signal.getsignal(s)
        if handler is not None:  # None: set from C, not restorable from Python; leave it alone
            previous[s] = signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(arrived):
            signal.raise_signal(s)
