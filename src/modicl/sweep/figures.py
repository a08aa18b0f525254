"""Figures of a sweep (PAPER.md §3): the phase diagram in the layout of Fig. 1b, the per-set accuracy
heatmaps of Fig. 3a, o.o.d. accuracy against n_id per depth, the depth law at one (n_id, α), and
training curves that show transient o.o.d. generalization. Everything is read from the sweep's ``results.csv`` and run
directories.

Accuracies are novel-query last-position accuracies (the phase metric, :data:`modicl.metrics.PHASE_KEY`).
A cell is a distribution over its seeds: each seed is classified on its own and the phase diagram draws
the fraction of seeds in each phase, never the phase of a seed-mean accuracy; seed means carry 95 %
Student-t intervals (:func:`modicl.sweep.cells.mean_interval`). "best" always means the checkpoint selected on
the validation o.o.d. tasks, reported on test tasks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from ..config import ConfigError  # noqa: E402
from ..figures import PHASE_COLORS, save_figure, subplots  # noqa: E402
from ..history import BEST_OOD
from ..metrics import PHASE_KEY, SET_LABELS, SETS  # noqa: E402
from ..phases import PHASE_LABELS, PHASES
from ..rundir import RunDir, read_metrics  # noqa: E402
from .cells import (
    cells_markdown,
    fingerprint_hits,
    fisher_exact,
    last_fingerprints,
    mean_interval,
    outside_patterns,  # noqa: E402
    shift_markdown,
    transient_markdown,
)
from .spec import point_dir  # noqa: E402

PHASE_ORDER = PHASES
KEY = PHASE_KEY  # the accuracy every sweep figure shows


def _col(df, which: str, s: str) -> str:
    """The results column of ``which`` (final / best_ood) and set ``s`` for :data:`KEY`; the plain
    last-position column for sweeps written before novel-query accuracy existed."""
    name = f"{which}.{s}.{KEY}"
    return name if name in df.columns else f"{which}.{s}.acc_last"


def _save(fig, path: Path) -> list[Path]:
    return save_figure(fig, path, dpi=130)


def _load(sweep_dir: Path):
    import pandas as pd

    path = sweep_dir / "results.csv"
    if not path.exists():
        raise ConfigError(f"{path} does not exist; run `modicl sweep` into {sweep_dir} first")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    if df.empty:
        raise ConfigError(f"{path} has no finished runs yet")
    spec = json.loads((sweep_dir / "spec.json").read_text())
    return df, spec


def _threshold(sweep_dir: Path, df) -> float:
    cfg = RunDir(point_dir(sweep_dir, df["hash"].iloc[0])).read_config_dict()
    return float(cfg.get("phase_threshold", 0.5))


def _group_keys(df) -> list[str]:
    """Axes other than n_id, alpha and seed that vary within an (n_id, α) cell (p, n_layers, any other swept
    field): one figure per combination of their values. A field zipped with n_id or α (a batch size that
    follows n_id) is constant within each cell and stays in one figure."""
    axes = ["p", "n_layers"] + [c for c in df.columns if "." in c and not c.startswith(("final.", "best_ood."))]
    cells = df.groupby(["n_id", "alpha"])
    return [c for c in axes if cells[c].nunique().max() > 1]


def _ood_test_acc(row: dict) -> float:
    """The o.o.d. test :data:`KEY` of a metrics.jsonl row (plain last-position in older rows; NaN when
    no query was novel)."""
    v = row["ood_test"].get(KEY, row["ood_test"]["acc_last"])
    return math.nan if v is None else v


def _interval_text(values) -> str:
    m, lo, hi = mean_interval(values)
    return f"{m:.2f}" if math.isnan(lo) else f"{m:.2f} [{max(0.0, lo):.2f}, {min(1.0, hi):.2f}]"


def _phase_counts(g) -> dict[str, int]:
    """Seeds per phase of a group of runs, in :data:`PHASE_ORDER` (unknown labels count as unlisted)."""
    phases = g["phase"].map(lambda ph: ph if ph in PHASE_ORDER else "unlisted").value_counts()
    return {ph: int(phases[ph]) for ph in PHASE_ORDER if ph in phases}


def _cells(df) -> list[dict]:
    """Per (n_id, α) cell: seeds per phase, and the seed-mean accuracy (95 % t-interval text) per set."""
    cells = []
    for (n_id, alpha), g in df.groupby(["n_id", "alpha"]):
        odd = g[~g["phase"].isin(PHASE_ORDER[:-1])]  # every label outside Table 1 counts as unlisted
        cells.append(
            {
                "n_id": int(n_id),
                "alpha": float(alpha),
                "n": len(g),
                "phases": _phase_counts(g),
                "unlisted_patterns": outside_patterns(odd.assign(phase="unlisted")),
                "acc": {s: _interval_text(g[_col(df, "final", s)]) for s in SETS},
            }
        )
    return cells


def _phase_bar(
    ax, x: float, y: float, width: float, height: float, counts: dict[str, int], n: int, unlisted: Sequence[str] = ()
) -> None:
    """A stacked bar of phase fractions, left edge at ``x``, bottom at ``y``, a segment per phase labelled
    with its seed count (and the ✓/✗ patterns of seeds in no Table 1 phase)."""
    left = x
    for ph in PHASE_ORDER:
        k = counts.get(ph, 0)
        if k:
            ax.add_patch(
                Rectangle((left, y), width * k / n, height, facecolor=PHASE_COLORS[ph], edgecolor="white", lw=0.8)
            )
            label = f"{k} {' '.join(unlisted)}" if ph == "unlisted" and unlisted else str(k)
            ax.text(left + width * k / n / 2, y + height / 2, label, ha="center", va="center", fontsize=7)
            left += width * k / n


def phase_diagram(df, thr: float, path: Path, title: str) -> list[Path]:
    """Fig. 1b layout with seeds: n_id on x, α on y; in each cell a bar of the fraction of seeds in each
    phase (each seed classified on its own), the seed-mean i.d. test and o.o.d. test accuracy with its
    95 % t-interval, and the seed count; a cell whose seeds disagree is framed in red."""
    cells = _cells(df)
    xs, ys = sorted({c["n_id"] for c in cells}), sorted({c["alpha"] for c in cells})
    fig, ax = subplots(figsize=(1.9 * len(xs) + 3.2, 1.45 * len(ys) + 1.6))
    disagree = False
    for c in cells:
        j, i = xs.index(c["n_id"]), ys.index(c["alpha"])
        _phase_bar(ax, j - 0.44, i - 0.44, 0.88, 0.28, c["phases"], c["n"], c["unlisted_patterns"])
        ax.text(
            j,
            i + 0.18,
            f"i.d. test {c['acc']['id_test']}\no.o.d. train {c['acc']['ood_train']}\n"
            f"o.o.d. test {c['acc']['ood_test']}\n{c['n']} seed{'s' * (c['n'] > 1)}",
            ha="center",
            va="center",
            fontsize=6.5,
        )
        if len(c["phases"]) > 1:
            disagree = True
            ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, edgecolor="tab:red", lw=1.5, ls="--"))
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    ax.set_xticks(
        range(len(xs)), [f"{x}" + (f"\n($2^{{{math.log2(x):g}}}$)" if math.log2(x).is_integer() else "") for x in xs]
    )
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    for k in range(1, len(xs)):
        ax.axvline(k - 0.5, color="0.85", lw=0.8)
    for k in range(1, len(ys)):
        ax.axhline(k - 0.5, color="0.85", lw=0.8)
    ax.set_xlabel("n_id: number of pre-training task vectors")
    ax.set_ylabel("α: fraction of the p² input pairs\nused in pre-training")
    seeds = max(c["n"] for c in cells)
    note = (
        "one seed per cell: an anecdote"
        if seeds == 1
        else f"bars: fraction of the seeds in each phase (≤ {seeds} seeds a cell)"
    )
    ax.set_title(
        f"{title}\n{note}; seed means with 95 % t-intervals, novel-query last-position accuracy; ✓ at ≥ {thr:g}",
        fontsize=8,
    )
    handles = [Patch(color=PHASE_COLORS[ph], label=PHASE_LABELS[ph]) for ph in PHASE_ORDER]
    if disagree:
        handles.append(Patch(fill=False, edgecolor="tab:red", ls="--", label="seeds disagree"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _save(fig, path)


def set_heatmaps(df, path: Path, title: str) -> list[Path]:
    """Fig. 3a: one panel per set, the seed-mean final novel-query last-position accuracy over the
    (n_id, α) grid."""
    xs, ys = sorted(df["n_id"].unique()), sorted(df["alpha"].unique())
    mean = df.groupby(["n_id", "alpha"])[[_col(df, "final", s) for s in SETS]].mean()
    fig, axes = subplots(1, 4, figsize=(4 * (0.7 * len(xs) + 1.2), 0.7 * len(ys) + 1.6), sharey=True)
    for ax, s in zip(axes, SETS):
        grid = [[mean.loc[(x, y), _col(df, "final", s)] if (x, y) in mean.index else math.nan for x in xs] for y in ys]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not math.isnan(grid[i][j]):
                    ax.text(
                        j,
                        i,
                        f"{grid[i][j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="w" if grid[i][j] < 0.6 else "k",
                    )
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_title(SET_LABELS[s], fontsize=9)
        ax.set_xlabel("n_id")
    axes[0].set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    axes[0].set_ylabel("α")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="novel-query last-position accuracy")
    fig.suptitle(title, fontsize=10, y=1.04)
    return _save(fig, path)


def ood_vs_n_id(df, path: Path, title: str) -> list[Path]:
    """O.o.d. test novel-query accuracy (final and validation-selected checkpoint, mean over seeds,
    bars: the seeds' range) against n_id, one line per depth and α; the copy baseline and chance grey."""
    depth_col = "n_layers"
    fig, ax = subplots(figsize=(6, 4))
    final, best = _col(df, "final", "ood_test"), _col(df, BEST_OOD, "ood_test")
    for (depth, alpha), g in df.groupby([depth_col, "alpha"]):
        m = g.groupby("n_id")[[final, best]].agg(["mean", "min", "max"])
        mid = m[(final, "mean")]
        line = ax.errorbar(
            m.index,
            mid,
            yerr=[mid - m[(final, "min")], m[(final, "max")] - mid],
            fmt="o-",
            capsize=2,
            label=f"depth {depth}, α {alpha:g} (final)",
        )[0]
        ax.plot(
            m.index,
            m[(best, "mean")],
            "o--",
            color=line.get_color(),
            alpha=0.6,
            label=f"depth {depth}, α {alpha:g} (best on validation)",
        )
        if "final.ood_test.copy_last" in g.columns:
            c = g.groupby("n_id")["final.ood_test.copy_last"].mean()
            ax.plot(c.index, c, ":", color=line.get_color(), lw=1, label=f"copy baseline, all queries (α {alpha:g})")
    if "p" in df.columns:
        ax.axhline(1 / df["p"].iloc[0], color="gray", ls=":", lw=1, label="chance 1/p")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n_id")
    ax.set_ylabel("o.o.d. test accuracy, novel queries, last position")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def training_curves(df, sweep_dir: Path, path: Path, title: str, max_runs: int = 24) -> list[Path]:
    """O.o.d. test last-position accuracy against step for up to ``max_runs`` runs (largest n_id first),
    the best-o.o.d. step marked: transient o.o.d. generalization shows as a peak before the end."""
    fig, ax = subplots(figsize=(7, 4))
    rows = df.sort_values(["n_id", "alpha"], ascending=False).head(max_runs)
    cmap = colormaps["viridis"]
    n_ids = sorted(df["n_id"].unique())
    for _, r in rows.iterrows():
        pts = read_metrics(point_dir(sweep_dir, r["hash"]))
        steps = [m["step"] for m in pts]
        acc = [_ood_test_acc(m) for m in pts]
        color = cmap(n_ids.index(r["n_id"]) / max(len(n_ids) - 1, 1))
        ax.plot(steps, acc, color=color, lw=1, alpha=0.8)
        best = int(r["best_ood_step"])
        if best in steps:
            ax.plot(best, acc[steps.index(best)], "*", color=color, ms=8)
    for n in n_ids:
        ax.plot([], [], color=cmap(n_ids.index(n) / max(len(n_ids) - 1, 1)), label=f"n_id {n}")
    ax.plot([], [], "k*", label="best o.o.d. checkpoint (validation)")
    ax.set_xlabel("step")
    ax.set_ylabel("o.o.d. test accuracy, novel queries, last position")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def depth_curves(df, sweep_dir: Path) -> dict[int, list[list[dict]]]:
    """Depth → the metrics.jsonl rows of each of its runs, in seed order."""
    return {
        int(d): [read_metrics(point_dir(sweep_dir, h)) for h in g.sort_values("seed")["hash"]]
        for d, g in df.groupby("n_layers")
    }


def depth_figure(df, curves: dict[int, list[list[dict]]], path: Path, title: str) -> list[Path]:
    """The depth law (PAPER.md §3) with seeds. Left: per depth, the fraction of seeds in each phase at the
    end of training and, beside it, at the checkpoint selected on the validation o.o.d. tasks (early
    stopping), with the count of seeds that reach o.o.d. generalization and a one-sided Fisher exact test
    of depth 2 against depth 1. Middle: seed-mean o.o.d. test accuracy (95 % t-intervals) at the end and at
    the selected checkpoint, with chance. Right: seed-mean o.o.d. train and test accuracy against step per
    depth (band: 95 % t-interval over seeds): a transient o.o.d. phase shows as a rise, then a fall.
    ``curves`` holds each depth's runs' metrics rows (:func:`depth_curves`)."""
    fig, (left, mid, right) = subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"wspace": 0.3})
    depths = sorted(int(d) for d in df["n_layers"].unique())
    wins = {}
    for k, d in enumerate(depths):
        g = df[df["n_layers"] == d]
        for off, col in ((-0.2, "phase"), (0.2, "phase_best_ood")):
            counts = _phase_counts(g.assign(phase=g[col]))
            y = 0.0
            for ph in PHASE_ORDER:
                h = counts.get(ph, 0) / len(g)
                if h:
                    left.bar(k + off, h, bottom=y, width=0.36, color=PHASE_COLORS[ph], edgecolor="white")
                    y += h
        wins[d] = (
            int((g["phase"] == "ood_generalization").sum()),
            int((g["phase_best_ood"] == "ood_generalization").sum()),
            len(g),
        )
        left.text(
            k,
            1.03,
            f"o.o.d. gen.\n{wins[d][0]}/{wins[d][2]} | {wins[d][1]}/{wins[d][2]}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    left.set_xticks(range(len(depths)), [f"{d}\nend | early stop" for d in depths], fontsize=7)
    left.set_xlabel("n_layers (depth)")
    left.set_ylabel("fraction of seeds in each phase")
    left.set_ylim(0, 1.25)
    left.legend(
        handles=[Patch(color=PHASE_COLORS[ph], label=PHASE_LABELS[ph]) for ph in PHASE_ORDER],
        fontsize=6,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=3,
    )
    if 1 in wins and 2 in wins:
        pv = fisher_exact(wins[2][0], wins[2][2], wins[1][0], wins[1][2])
        left.set_title(
            f"o.o.d. generalization at the end, depth 2 vs 1: {wins[2][0]}/{wins[2][2]} vs {wins[1][0]}/{wins[1][2]}, "
            f"Fisher p = {pv:.3f} (one-sided)",
            fontsize=8,
        )
    final, best = _col(df, "final", "ood_test"), _col(df, BEST_OOD, "ood_test")
    for col, ls, label in ((final, "-", "end of training"), (best, "--", "early stop (validation o.o.d. tasks)")):
        stats = [mean_interval(df[df["n_layers"] == d][col]) for d in depths]
        m = [s_[0] for s_ in stats]
        err = [
            [0 if math.isnan(s_[1]) else s_[0] - s_[1] for s_ in stats],
            [0 if math.isnan(s_[2]) else s_[2] - s_[0] for s_ in stats],
        ]
        mid.errorbar(depths, m, yerr=err, fmt="o" + ls, capsize=3, label=label)
    if "p" in df.columns:
        mid.axhline(1 / df["p"].iloc[0], color="gray", ls=":", lw=1, label="chance 1/p")
    mid.set_xticks(depths)
    mid.set_xlabel("n_layers (depth)")
    mid.set_ylabel("o.o.d. test accuracy, novel queries, last position\n(seed mean, 95 % t-interval)")
    mid.set_ylim(0, 1.02)
    mid.legend(fontsize=7)
    cmap = colormaps["viridis"]
    for depth in depths:
        color = cmap(depths.index(depth) / max(len(depths) - 1, 1))
        runs = curves[depth]
        steps = [r["step"] for r in runs[0]]
        for s, ls in (("ood_train", "-"), ("ood_test", ":")):
            per_step = [[run[i][s].get(KEY) for run in runs if i < len(run)] for i in range(len(steps))]
            stats = [
                mean_interval([v for v in vals if v is not None])
                if any(v is not None for v in vals)
                else (math.nan,) * 3
                for vals in per_step
            ]
            right.plot(
                steps,
                [m for m, _, _ in stats],
                ls=ls,
                color=color,
                lw=1.2,
                label=f"depth {depth}, {SET_LABELS[s]}" if s == "ood_train" or depth == depths[-1] else None,
            )
            if len(runs) > 1 and s == "ood_train":
                right.fill_between(
                    steps,
                    [max(0, lo) for _, lo, _ in stats],
                    [min(1, hi) for _, _, hi in stats],
                    color=color,
                    alpha=0.12,
                    lw=0,
                )
    right.set_xlabel("step")
    right.set_ylabel("o.o.d. accuracy, novel queries, last position\n(seed mean; band: 95 % t-interval, o.o.d. train)")
    right.set_ylim(0, 1.02)
    right.set_title("solid: o.o.d. train (unseen tasks, training inputs); dotted: o.o.d. test", fontsize=8)
    right.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def shift_figure(curves: dict[int, list[list[dict]]], path: Path, title: str, p: int) -> list[Path]:
    """The algorithmic shift (PAPER.md §4.3, Fig. 5) per depth, at each run's last evaluation: accuracy
    against shot k on the novel queries that only modular regression answers (solid) and on those ratio
    matching answers (dotted), pooled over the depth's seeds (queries summed per k; k with fewer than 10
    pooled queries left out), o.o.d. train (left) and o.o.d. test (right), with chance 1/p. A depth that
    runs ratio matching stays at chance on MR-only queries; one that shifts to modular regression climbs
    with k. ``curves`` as from :func:`depth_curves`."""
    fig, axes = subplots(1, 2, figsize=(12, 4.4), sharey=True)
    colors = colormaps["viridis"]
    depths = sorted(curves)
    for ax, s in zip(axes, ("ood_train", "ood_test")):
        for j, d in enumerate(depths):
            fps = last_fingerprints(curves[d], s)
            if not fps:
                continue
            color = colors(j / max(1, len(depths) - 1) * 0.85)
            for cls, ls in (("mr_only", "-"), ("rm", ":")):
                n_ctx = len(fps[0][cls]["n"])
                ks, accs = [], []
                for k in range(n_ctx):
                    n = sum(fp[cls]["n"][k] for fp in fps)
                    if n >= 10:
                        ks.append(k)
                        accs.append(sum(fingerprint_hits(fp, cls, k) for fp in fps) / n)
                label = f"depth {d} ({len(fps)} seeds), {'MR-only' if cls == 'mr_only' else 'RM-solvable'}"
                ax.plot(
                    ks, accs, ls=ls, color=color, lw=1.4, marker="o" if cls == "mr_only" else None, ms=2.5, label=label
                )
        ax.axhline(1 / p, color="grey", lw=0.8, ls="--", label=f"chance 1/{p}")
        ax.set_xlabel("shots k (examples before the query)")
        ax.set_title(SET_LABELS[s], fontsize=9)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("accuracy on novel queries of each class\n(last evaluation, pooled over seeds)")
    axes[1].legend(fontsize=6, loc="upper left")
    fig.suptitle(title + ": which algorithm answers, per shot", fontsize=10)
    return _save(fig, path)


def plot_sweep(sweep_dir: str | Path) -> list[Path]:
    """Draw every figure of the sweep in ``sweep_dir/plots`` (PNG and PDF); return the paths written.
    Raises ConfigError when the sweep has no results yet."""
    sweep_dir = Path(sweep_dir)
    df, spec = _load(sweep_dir)
    thr = _threshold(sweep_dir, df)
    out = sweep_dir / "plots"
    written: list[Path] = []
    keys = _group_keys(df)
    groups = df.groupby(keys) if keys else [((), df)]
    for values, g in groups:
        values = values if isinstance(values, tuple) else (values,)
        tag = "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))
        title = spec["name"] + ("" if not tag else " (" + ", ".join(f"{k}={v}" for k, v in zip(keys, values)) + ")")
        suffix = f"_{tag}" if tag else ""
        if g["n_id"].nunique() > 1 or g["alpha"].nunique() > 1:
            written += phase_diagram(g, thr, out / f"phase_diagram{suffix}", title)
            written += set_heatmaps(g, out / f"accuracy_heatmaps{suffix}", title)
        written += training_curves(g, sweep_dir, out / f"training_curves{suffix}", title)
    if df["n_id"].nunique() > 1:
        written += ood_vs_n_id(df, out / "ood_vs_n_id", spec["name"])
    if df["n_layers"].nunique() > 1 and df["n_id"].nunique() == 1 and df["alpha"].nunique() == 1:
        curves = depth_curves(df, sweep_dir)  # read once, for the figure and the table
        written += depth_figure(df, curves, out / "depth", spec["name"])
        transient = out / "transient.md"
        transient.write_text(
            f"# {spec['name']}: o.o.d. accuracy in the middle and at the end of training, per depth\n\n"
            f"{transient_markdown({f'depth {d}': runs for d, runs in curves.items()})}\n"
        )
        written.append(transient)
        p = int(df["p"].iloc[0])
        written += shift_figure(curves, out / "algorithmic_shift", spec["name"], p)
        shift = out / "algorithmic_shift.md"
        groups = {f"depth {d}": runs for d, runs in curves.items()}
        shift.write_text(
            f"# {spec['name']}: accuracy on the queries each algorithm answers, per shot band and depth\n\n"
            "Novel queries at each run's last evaluation, split by the fingerprint (RM-solvable: ratio matching "
            "answers them; MR-only: only modular regression does); seed means with 95 % t-intervals over the "
            "seeds that had such queries (their count in brackets).\n\n"
            + "\n\n".join(f"## {SET_LABELS[s]}\n\n{shift_markdown(groups, s)}" for s in ("ood_train", "ood_test"))
            + "\n"
        )
        written.append(shift)
    seeds = ("seed", "task_seed", "init_seed", "data_seed")
    axes = [
        c
        for c in df.columns
        if c not in seeds
        and (c in ("p", "n_id", "alpha", "n_layers") or ("." in c and not c.startswith(("final.", "best_ood."))))
    ]
    table = out / "cells.md"
    table.write_text(
        f"# {spec['name']}: one row per cell, over its seeds\n\nNovel-query last-position accuracy at the end of "
        "training (and at the checkpoint selected on the validation o.o.d. tasks: early stop), seed means with "
        f"95 % Student-t intervals over the cell's seeds; a set is ✓ at ≥ {thr:g}.\n\n{cells_markdown(df, axes)}\n"
    )
    return written + [table]
