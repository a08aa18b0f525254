"""Figures of a sweep (PAPER.md §3): the phase diagram in the layout of Fig. 1b, the per-set accuracy
heatmaps of Fig. 3a, o.o.d. accuracy against n_id per depth, accuracy against depth at one (n_id, α), and
training curves that show transient o.o.d. generalization. Everything is read from the sweep's ``results.csv`` and run directories.

Accuracies are novel-query last-position accuracies (the phase metric, :data:`modicl.metrics.PHASE_KEY`),
averaged over a cell's seeds with their range shown. A cell's phase is the phase most of its seeds
reached (each seed classified on its own, never a seed-mean), with the share of seeds that reached it;
"best" always means the checkpoint selected on the validation o.o.d. tasks, reported on test tasks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib import colormaps

from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from .config import ConfigError  # noqa: E402
from .plots import save_figure, subplots  # noqa: E402
from .rundir import RunDir, read_metrics  # noqa: E402
from .sweep.spec import point_dir  # noqa: E402
from .metrics import PHASE_KEY, PHASE_LABELS, SET_LABELS, SETS  # noqa: E402

PHASE_ORDER = ("none", "id_memorization", "id_generalization", "ood_memorization", "ood_generalization", "unlisted")
PHASE_COLORS = ("#d9d9d9", "#9ecae1", "#3182bd", "#fdae6b", "#e6550d", "#9e9ac8")
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


def _cells(df) -> list[dict]:
    """Per (n_id, α) cell: seed-mean accuracy and range per set, the majority phase and its share."""
    cells = []
    for (n_id, alpha), g in df.groupby(["n_id", "alpha"]):
        acc = {s: float(g[_col(df, "final", s)].mean()) for s in SETS}
        spread = {s: (float(g[_col(df, "final", s)].min()), float(g[_col(df, "final", s)].max())) for s in SETS}
        phases = g["phase"].map(lambda ph: ph if ph in PHASE_ORDER else "unlisted")
        counts = phases.value_counts()
        top = max(counts.index, key=lambda ph: (counts[ph], PHASE_ORDER.index(ph)))
        cells.append({"n_id": int(n_id), "alpha": float(alpha), "acc": acc, "spread": spread, "n": len(g),
                      "phase": top, "agree": int(counts[top])})
    return cells


def phase_diagram(df, thr: float, path: Path, title: str) -> list[Path]:
    """Fig. 1b layout: n_id on x (log₂ spacing), α on y, the majority phase of the cell's seeds as
    colour (hatched where seeds disagree), each cell labelled with its seed-mean novel-query
    last-position accuracies (i.d. train / test over o.o.d. train / test) and the share of seeds in
    its phase."""
    cells = _cells(df)
    xs, ys = sorted({c["n_id"] for c in cells}), sorted({c["alpha"] for c in cells})
    fig, ax = subplots(figsize=(1.25 * len(xs) + 2.5, 0.9 * len(ys) + 1.6))
    grid = [[math.nan] * len(xs) for _ in ys]
    for c in cells:
        grid[ys.index(c["alpha"])][xs.index(c["n_id"])] = PHASE_ORDER.index(c["phase"])
    ax.imshow(grid, cmap=ListedColormap(PHASE_COLORS), vmin=-0.5, vmax=len(PHASE_ORDER) - 0.5, origin="lower", aspect="auto")
    for c in cells:
        a, j, i = c["acc"], xs.index(c["n_id"]), ys.index(c["alpha"])
        share = f"\n{c['agree']}/{c['n']} seeds" if c["n"] > 1 else ""
        ax.text(j, i, f"{a['id_train']:.2f}/{a['id_test']:.2f}\n{a['ood_train']:.2f}/{a['ood_test']:.2f}{share}",
                ha="center", va="center", fontsize=7)
        if c["agree"] < c["n"]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.3", lw=0))
    ax.set_xticks(range(len(xs)), [f"{x}" + (f"\n($2^{{{math.log2(x):g}}}$)" if math.log2(x).is_integer() else "") for x in xs])
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    ax.set_xlabel("n_id: number of pre-training task vectors")
    ax.set_ylabel("α: fraction of the p² input pairs\nused in pre-training")
    seeds = max(c["n"] for c in cells)
    seeds_text = "one seed: an anecdote" if seeds == 1 else f"mean of ≤ {seeds} seeds; colour: the phase most seeds reached, hatched: seeds disagree"
    ax.set_title(f"{title}\ncells: novel-query last-position acc. i.d. train/test, o.o.d. train/test, ✓ at ≥ {thr:g}\n({seeds_text})",
                 fontsize=8)
    ax.legend(handles=[Patch(color=col, label=PHASE_LABELS[ph]) for ph, col in zip(PHASE_ORDER, PHASE_COLORS)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
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
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                if not math.isnan(grid[i][j]):
                    ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", fontsize=7, color="w" if grid[i][j] < 0.6 else "k")
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
    final, best = _col(df, "final", "ood_test"), _col(df, "best_ood", "ood_test")
    for (depth, alpha), g in df.groupby([depth_col, "alpha"]):
        m = g.groupby("n_id")[[final, best]].agg(["mean", "min", "max"])
        mid = m[(final, "mean")]
        line = ax.errorbar(m.index, mid, yerr=[mid - m[(final, "min")], m[(final, "max")] - mid], fmt="o-", capsize=2,
                           label=f"depth {depth}, α {alpha:g} (final)")[0]
        ax.plot(m.index, m[(best, "mean")], "o--", color=line.get_color(), alpha=0.6, label=f"depth {depth}, α {alpha:g} (best on validation)")
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


def depth_figure(df, sweep_dir: Path, path: Path, title: str) -> list[Path]:
    """The depth claim (PAPER.md §3): left, the final (solid) and best-o.o.d.-checkpoint (dashed) last-position
    accuracy of the four sets against n_layers, mean over seeds; right, o.o.d. test accuracy against step
    per depth (first seed), the best-o.o.d. step marked, where transient o.o.d. generalization shows."""
    fig, (left, right) = subplots(1, 2, figsize=(11, 4))
    mean = df.groupby("n_layers")[[_col(df, w, s) for w in ("final", "best_ood") for s in SETS]].mean()
    depths = list(mean.index)
    for s in SETS:
        line, = left.plot(depths, mean[_col(df, "final", s)], "o-", label=SET_LABELS[s])
        left.plot(depths, mean[_col(df, "best_ood", s)], "o--", color=line.get_color(), alpha=0.6)
    left.plot([], [], "k--", alpha=0.6, label="at the best o.o.d. checkpoint")
    left.set_xticks(depths)
    left.set_xlabel("n_layers (depth)")
    left.set_ylabel("accuracy, novel queries, last position")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=7)
    cmap = colormaps["viridis"]
    for depth in depths:
        r = df[df["n_layers"] == depth].sort_values("seed").iloc[0]
        pts = read_metrics(point_dir(sweep_dir, r["hash"]))
        steps, acc = [m["step"] for m in pts], [_ood_test_acc(m) for m in pts]
        color = cmap(depths.index(depth) / max(len(depths) - 1, 1))
        right.plot(steps, acc, color=color, lw=1, label=f"depth {depth}")
        best = int(r["best_ood_step"])
        if best in steps:
            right.plot(best, acc[steps.index(best)], "*", color=color, ms=8)
    right.set_xlabel("step")
    right.set_ylabel("o.o.d. test accuracy, novel queries, last position")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
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
        written += depth_figure(df, sweep_dir, out / "depth", spec["name"])
    return written
