"""Progress display that suits where stderr goes: a tqdm bar on a terminal, plain lines in a log file.

A tqdm bar redraws its one line many times a second with carriage returns; in a SLURM log or a file
behind ``2> log`` that is one ever-growing line. When stderr is not a terminal, :func:`progress_bar`
returns :class:`LogProgress` instead, which has the same small interface (``update``, ``set_postfix``,
``refresh``, ``close``, the attribute ``n``) and writes one plain line at most every ``interval`` seconds and when it
closes.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm


class LogProgress:
    """A progress report for log files: ``desc: 1250/6000 step (20.8 %), 12.3 step/s, loss=0.52`` lines.

    Args:
        total: the count at completion; initial: where it starts (a resumed run).
        desc, unit: the label and the unit of the count.
        interval: seconds between lines (the first line comes after ``interval`` seconds too).
        file: where to write (default: ``sys.stderr`` at the time of writing).
        disable: write nothing.
    """

    def __init__(
        self,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        unit: str = "it",
        interval: float = 30.0,
        file: TextIO | None = None,
        disable: bool = False,
        **_: Any,
    ):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.interval, self.file, self.disable = interval, file, disable
        self.postfix: dict[str, Any] = {}
        self._start_n, self._t0 = initial, time.monotonic()
        self._last, self._closed = self._t0, False

    def _line(self) -> str:
        elapsed = time.monotonic() - self._t0
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.1f} %)" if self.total else ""
        post = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {done} {self.unit}{pct}, {rate:.3g} {self.unit}/s, {elapsed:.0f} s{post}"

    def _write(self) -> None:
        if not self.disable:
            print(self._line(), file=self.file or sys.stderr, flush=True)
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; write a line when ``interval`` seconds have passed since the last one."""
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._write()

    def refresh(self) -> None:
        """After ``n`` was set directly: write a line if ``interval`` seconds have passed since the last one."""
        self.update(0)

    def set_postfix(self, **kwargs: Any) -> None:
        """Values shown at the end of the next line (loss, accuracies …)."""
        self.postfix = kwargs

    def close(self) -> None:
        """Write the final line (once)."""
        if not self._closed:
            self._closed = True
            if self.n != self._start_n:
                self._write()


def progress_bar(
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    interval: float = 30.0,
    lines: bool = False,
    **tqdm_kwargs: Any,
):
    """A tqdm bar when stderr is a terminal (or in a Jupyter notebook), else a :class:`LogProgress` writing a line
    every ``interval``
    seconds. ``lines``: plain lines even on a terminal (several processes sharing one stderr, where bars would
    overwrite each other). Both take ``update(n)``, ``set_postfix(**values)`` and ``close()``."""
    if not lines and (
        "ipykernel" in sys.modules or (sys.stderr is not None and sys.stderr.isatty())
    ):  # a notebook draws its own bar
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, **tqdm_kwargs)
    return LogProgress(total=total, initial=initial, desc=desc, unit=unit, disable=disable, interval=interval)
