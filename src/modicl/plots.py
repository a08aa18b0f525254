"""Figures of a run: learning curves on the four sets and k-shot accuracy curves (PAPER.md Fig. 1c, 3b).

Only drawing happens here; every number comes from ``metrics.jsonl`` rows or evaluation results. Every
figure is a ``matplotlib.figure.Figure`` on its own Agg canvas (:func:`subplots`): importing or calling
this module leaves pyplot and the caller's matplotlib backend alone (a notebook keeps its inline plots).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import SET_LABELS, SETS

_COLORS = {"id_train": "tab:blue", "id_test": "tab:cyan", "ood_train": "tab:red", "ood_test": "tab:orange"}


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs):
    """``pyplot.subplots`` without pyplot: a new Figure on its own Agg canvas and its axes (``kwargs`` go
    to :meth:`matplotlib.figure.Figure.subplots`: sharex, sharey, squeeze, …). Returns (figure, axes)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: Path, suffixes: Sequence[str] = (".png", ".pdf"), dpi: int = 120) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix (PNG and PDF by default); return the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(s) for s in suffixes]
    for target in out:
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
    return out


def _save(fig, path: Path) -> None:
    save_figure(fig, path, suffixes=(path.suffix,))


def learning_curves_plot(rows: Sequence[Mapping], path: Path, p: int, best_step: int | None = None) -> None:
    """Accuracy (all positions and last position) and z-token loss vs step for the four sets.

    Args:
        rows: metrics.jsonl rows, each with ``step`` and one dict per set.
        path: PNG to write.
        p: modulus, for the chance lines (accuracy 1/p, loss ln p).
        best_step: step of the best o.o.d. checkpoint, marked with a vertical line.
    """
    steps = [r["step"] for r in rows]
    fig, axes = subplots(1, 3, figsize=(15, 4))
    for ax, key, title in zip(axes, ("acc_last", "acc", "loss"), ("last-position accuracy", "all-position accuracy", "loss on z tokens")):
        for s in SETS:
            ax.plot(steps, [r[s][key] for r in rows], label=SET_LABELS[s], color=_COLORS[s])
        ax.axhline(math.log(p) if key == "loss" else 1 / p, color="gray", ls=":", lw=1, label="chance")
        if best_step is not None:
            ax.axvline(best_step, color="k", ls="--", lw=0.8, label="best o.o.d.")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)" if key == "loss" else "accuracy")
        ax.set_title(title)
        if key != "loss":
            ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def kshot_plot(results: Mapping[str, Mapping], path: Path, p: int) -> None:
    """Accuracy vs number of shots k (in-context examples before the query) for the four sets.

    Args:
        results: {label: evaluation result with a ``kshot`` list per set} — one line style per label.
        path: PNG to write.
        p: modulus, for the chance line.
    """
    fig, ax = subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    for (label, res), ls in zip(results.items(), styles):
        for s in SETS:
            k = res[s]["kshot"]
            ax.plot(range(len(k)), k, ls=ls, color=_COLORS[s], label=f"{SET_LABELS[s]} ({label})")
    ax.axhline(1 / p, color="gray", ls=":", lw=1, label="chance 1/p")
    ax.set_xlabel("number of shots k (in-context examples before the query)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
