"""Standard output and error that survive a closed pipe: ``modicl train … 2>&1 | head -1`` trains to the end.

When the reader of a pipe exits (``| head``), the next write raises BrokenPipeError. stdout and stderr
carry only reports (tables, progress lines, warnings); the results are files in the run directory. So
once a stream's reader has gone, its writes are dropped and the command finishes its work as if it had
not been watched: the same files, the same exit code. The stream's file descriptor is pointed at
/dev/null, so the interpreter's final flush cannot fail on it either.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

_NAMES = ("stdout", "stderr")


class DropOnClosedPipe:
    """Wraps a text stream: writes and flushes go through until the stream's reader has gone, then are
    dropped (and the descriptor points at /dev/null). ``broken`` says whether that happened."""

    def __init__(self, stream: TextIO):
        self.stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._broke()

    def _broke(self) -> None:
        self.broken = True
        to_devnull(self.stream)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def to_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null (nothing for a stream without one, e.g. captured)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


@contextlib.contextmanager
def guard_streams() -> Iterator[None]:
    """Within the block, sys.stdout and sys.stderr drop output once their pipe's reader has gone
    (:class:`DropOnClosedPipe`); the original streams come back afterwards."""
    guards = {n: DropOnClosedPipe(getattr(sys, n)) for n in _NAMES}
    for n, g in guards.items():
        setattr(sys, n, g)
    try:
        yield
        for g in guards.values():
            g.flush()  # inside the guard: a closed pipe shows here, not at interpreter exit
    finally:
        for n, g in guards.items():
            if getattr(sys, n) is g:
                setattr(sys, n, g.stream)


def guard_process_streams() -> None:
    """For a process of modicl's own (a sweep worker): guard sys.stdout and sys.stderr for its lifetime."""
    for n in _NAMES:
        if not isinstance(getattr(sys, n), DropOnClosedPipe) and getattr(sys, n) is not None:
            setattr(sys, n, DropOnClosedPipe(getattr(sys, n)))
