"""Drawing primitives that every room's figures share: a Figure on its own Agg canvas, an atomic save in
several formats, and one colour per evaluation set and per phase.

Every figure is a ``matplotlib.figure.Figure`` on its own canvas (:func:`subplots`), so drawing leaves
pyplot and the caller's matplotlib backend alone (a notebook keeps its inline plots). The figures
themselves live with what they show: a run's in :mod:`modicl.report.figures`, the analyses' in
:mod:`modicl.analysis.figures`, a sweep's in :mod:`modicl.sweep.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .phases import PHASES

SET_COLORS = {"id_train": "tab:blue", "id_test": "tab:cyan", "ood_train": "tab:red", "ood_test": "tab:orange"}
# one colour per phase of :data:`modicl.phases.PHASES` (greys and blues: i.d.; oranges: o.o.d.), in every figure
PHASE_COLORS = dict(zip(PHASES, ("#d9d9d9", "#9ecae1", "#3182bd", "#fdae6b", "#e6550d", "#9e9ac8")))


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs):
    """``pyplot.subplots`` without pyplot: a new Figure on its own Agg canvas and its axes (``kwargs`` go
    to :meth:`matplotlib.figure.Figure.subplots`: sharex, sharey, squeeze, …). Returns (figure, axes)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: Path, suffixes: Sequence[str] = (".png", ".pdf"), dpi: int = 120) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix (PNG and PDF by default), each to a temporary name first
    (:func:`modicl.rundir.atomic_write`: never a partial file); return the paths. Raises OSError naming
    the file that could not be written."""
    from .rundir import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(s) for s in suffixes]
    for target in out:
        atomic_write(target, lambda tmp, t=target: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=t.suffix[1:]))
    return out
