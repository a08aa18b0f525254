"""Figures of a run: learning curves on the four sets and k-shot accuracy curves (PAPER.md Fig. 1c, 3b).

Only drawing happens here; every number comes from ``metrics.jsonl`` rows or evaluation results. Every
figure is a ``matplotlib.figure.Figure`` on its own Agg canvas (:func:`subplots`): importing or calling
this module leaves pyplot and the caller's matplotlib backend alone (a notebook keeps its inline plots).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..figures import PHASE_COLORS, SET_COLORS, save_figure, subplots
from ..metrics import BASELINE_LABELS, BASELINES, SET_LABELS, SETS, VAL_SET
from ..phases import PHASE_LABELS, classify_phase


def phase_segments(rows: Sequence[Mapping], threshold: float) -> list[tuple[int, int, str]]:
    """The phases a run passed through: (first step, last step, phase) for each stretch of evaluations
    classified alike (:func:`modicl.phases.classify_phase`), in order; a boundary lies between the last
    step of one stretch and the first of the next."""
    out: list[list] = []
    for r in rows:
        ph = classify_phase(r, threshold)
        if out and out[-1][2] == ph:
            out[-1][1] = r["step"]
        else:
            out.append([r["step"], r["step"], ph])
    return [tuple(x) for x in out]


def _save(fig, path: Path) -> None:
    save_figure(fig, path, suffixes=(path.suffix,))


def _acc(row: Mapping, s: str, key: str) -> float:
    v = row.get(s, {}).get(key) if s in row else None
    return math.nan if v is None else v


def learning_curves_plot(rows: Sequence[Mapping], path: Path, p: int, best_step: int | None = None) -> None:
    """Accuracy and z-token loss vs step for the four sets, beside their null models.

    Panels: novel-query last-position accuracy (the phase metric; the validation o.o.d. set dashed),
    last-position accuracy of all queries with each set's copy baseline (dotted, same colour), the
    all-position accuracy, and the loss. Every accuracy panel has the chance line 1/p.

    Args:
        rows: metrics.jsonl rows, each with ``step`` and one dict per set.
        path: PNG to write.
        p: modulus, for the chance lines (accuracy 1/p, loss ln p).
        best_step: step of the best o.o.d. checkpoint (selected on validation tasks), a vertical line.
    """
    steps = [r["step"] for r in rows]
    fig, axes = subplots(1, 4, figsize=(20, 4))
    panels = (
        ("acc_last_novel", "last position, novel queries (phase metric)"),
        ("acc_last", "last position, all queries (dotted: copy baseline)"),
        ("acc", "all positions"),
        ("loss", "loss on z tokens"),
    )
    for ax, (key, title) in zip(axes, panels):
        for s in SETS:
            ax.plot(steps, [_acc(r, s, key) for r in rows], label=SET_LABELS[s], color=SET_COLORS[s])
            if key == "acc_last" and "baselines" in rows[-1].get(s, {}):
                ax.plot(
                    steps,
                    [r[s]["baselines"]["copy"]["acc_last"] if "baselines" in r.get(s, {}) else math.nan for r in rows],
                    color=SET_COLORS[s],
                    ls=":",
                    lw=1,
                )
        if key == "acc_last_novel" and VAL_SET in rows[-1]:
            ax.plot(steps, [_acc(r, VAL_SET, key) for r in rows], color="k", ls="--", lw=1, label=SET_LABELS[VAL_SET])
        ax.axhline(math.log(p) if key == "loss" else 1 / p, color="gray", ls=":", lw=1, label="chance")
        if best_step is not None:
            ax.axvline(best_step, color="k", ls="--", lw=0.8, label="best o.o.d. (validation)")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)" if key == "loss" else "accuracy")
        ax.set_title(title, fontsize=10)
        if key != "loss":
            ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def attention_progress_plot(
    rows: Sequence[Mapping], path: Path, best_step: int | None = None, threshold: float | None = None
) -> bool:
    """Progress measures against the step, with the run's phases as background bands (PAPER.md §3: the
    phase of each evaluation, Table 1, so the boundaries show where the run changed phase).

    Top: the novel-query last-position accuracy of the four sets and the threshold. Bottom: the
    hidden-progress measures of :func:`modicl.circuits.attention_scores` (per layer, the strongest head's
    attention to the previous token, two back, and all earlier z tokens) beside the i.d.-train loss (right
    axis), so a circuit forming under the loss plateau shows before the loss moves.

    Args:
        rows: metrics.jsonl rows; rows without ``attention`` (older runs) are skipped.
        path: PNG to write.
        best_step: step of the best o.o.d. checkpoint, a vertical line.
        threshold: the phase threshold; None draws no phase bands.
    Returns:
        False (and writes nothing) when no row has the measures.
    """
    rows = [r for r in rows if "attention" in r]
    if not rows:
        return False
    steps = [r["step"] for r in rows]
    n_layers = len(rows[0]["attention"]["prev_token"])
    fig, (top, ax) = subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [2, 3]})
    for s in SETS:
        top.plot(steps, [_acc(r, s, "acc_last_novel") for r in rows], color=SET_COLORS[s], label=SET_LABELS[s])
    top.set_ylabel("accuracy, novel queries,\nlast position")
    top.set_ylim(0, 1.02)
    for key, ls in (("prev_token", "-"), ("two_back", "--"), ("z_tokens", ":")):
        for layer in range(n_layers):
            ax.plot(
                steps,
                [r["attention"][key][layer] for r in rows],
                ls=ls,
                color=f"C{layer}",
                label=f"layer {layer}: {key.replace('_', ' ')}",
            )
    seen = set()
    if threshold is not None:
        top.axhline(threshold, color="k", ls=":", lw=0.8, label=f"phase threshold {threshold:g}")
        segs = phase_segments(rows, threshold)
        for i, (a, b, ph) in enumerate(segs):
            # a band reaches halfway to the neighbouring evaluations, so boundaries sit between evaluations
            lo = a if i == 0 else (segs[i - 1][1] + a) / 2
            hi = b if i == len(segs) - 1 else (b + segs[i + 1][0]) / 2
            for axis in (top, ax):
                axis.axvspan(
                    lo,
                    hi,
                    color=PHASE_COLORS[ph],
                    alpha=0.35,
                    lw=0,
                    label=None if ph in seen or axis is ax else PHASE_LABELS[ph],
                )
            seen.add(ph)
    for axis in (top, ax):
        if best_step is not None:
            axis.axvline(
                best_step, color="k", ls="--", lw=0.8, label="best o.o.d. (validation)" if axis is top else None
            )
    ax.set_xlabel("step")
    ax.set_ylabel("attention weight from y positions (strongest head)")
    ax.set_ylim(0, 1.02)
    loss_ax = ax.twinx()
    loss_ax.plot(steps, [_acc(r, "id_train", "loss") for r in rows], color="0.4", lw=2, alpha=0.5)
    loss_ax.set_ylabel("i.d. train loss (grey)")
    top.legend(fontsize=6, ncol=2, loc="upper left")
    ax.legend(fontsize=6, ncol=max(1, n_layers))
    top.set_title(
        "progress measures; background: the phase of each evaluation (Table 1)"
        if threshold is not None
        else "progress measures",
        fontsize=9,
    )
    _save(fig, path)
    return True


def kshot_plot(results: Mapping[str, Mapping], path: Path, p: int) -> None:
    """Accuracy vs number of shots k (in-context examples before the query) for the four sets, with
    the null models of the first result's o.o.d. test set (copy, ratio matching, modular regression;
    grey) and chance.

    Args:
        results: {label: evaluation result with a ``kshot`` list per set} — one line style per label.
        path: PNG to write.
        p: modulus, for the chance line.
    """
    fig, ax = subplots(figsize=(7.5, 4.5))
    styles = ["-", "--", ":", "-."]
    for (label, res), ls in zip(results.items(), styles):
        for s in SETS:
            k = res[s]["kshot"]
            ax.plot(range(len(k)), k, ls=ls, color=SET_COLORS[s], label=f"{SET_LABELS[s]} ({label})")
    first = next(iter(results.values()))
    base = first["ood_test"].get("baselines", {})
    for b, ls in zip(BASELINES, ("-", "--", "-.")):
        if b in base and "kshot" in base[b]:
            ax.plot(
                range(len(base[b]["kshot"])),
                base[b]["kshot"],
                color="0.55",
                ls=ls,
                lw=1,
                label=f"{BASELINE_LABELS[b]} (o.o.d. test null)",
            )
    ax.axhline(1 / p, color="gray", ls=":", lw=1, label="chance 1/p")
    ax.set_xlabel("number of shots k (in-context examples before the query)")
    ax.set_ylabel("accuracy (all queries)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6, ncol=2)
    _save(fig, path)
