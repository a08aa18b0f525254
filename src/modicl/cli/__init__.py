"""The ``modicl`` command line, a thin layer over the library: :mod:`~modicl.cli.commands` (train, eval,
bench, analyze, the dispatch in :func:`main`), :mod:`~modicl.cli.sweep` (sweep, status, plot) and
:mod:`~modicl.cli.args` (flag parsing, one-line errors with a 'did you mean' hint).
"""

from .commands import entry, main

__all__ = ["entry", "main"]
