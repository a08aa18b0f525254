"""Output folders replaced only when complete: figures and tables are written into a staging folder and
moved into place at the end, so Ctrl-C, a full disk or a crash leaves the previous outputs as they were.

Every figure is also written to a temporary name and renamed (:func:`modicl.rundir.atomic_write`), so no
reader ever sees a half-written or 0-byte file, and a failed write names the file it was writing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staged(out_dir: Path, replace_all: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; when the block ends without an exception, move
    every file written there into ``out_dir`` (created if missing), replacing files of the same name.
    With ``replace_all`` the files already in ``out_dir`` (not its sub-folders) are removed first, so it
    holds only the new outputs. On an exception or interrupt the staging folder is removed and
    ``out_dir`` is untouched."""
    out_dir = Path(out_dir)
    stage = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        out_dir.mkdir(parents=True, exist_ok=True)
        if replace_all:
            new = {f.name for f in stage.iterdir()}
            for f in out_dir.iterdir():
                if f.is_file() and f.name not in new:
                    f.unlink()
        for f in sorted(stage.rglob("*")):  # renames only: nothing left to write, so no disk-full midway
            target = out_dir / f.relative_to(stage)
            if f.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(f, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
