"""Seed-level summaries of a sweep: one line per cell (a combination of the non-seed axes) with how many
seeds landed in each phase and the seed-mean accuracy with its 95 % interval.

A setting is described by the distribution of its seeds' outcomes, never by the phase of a seed-mean
accuracy (a mean of two memorizing seeds and one generalizing seed is not a phase).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from ..metrics import SET_LABELS, SETS
from ..phases import ALGORITHM_LABELS, ALGORITHMS, PHASES

# two-sided 95 % Student-t quantiles t_{0.975, df} for df = 1…30 (beyond 30 the normal 1.96 is within 4 %)
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean of per-seed values and its 95 % Student-t interval (mean, low, high). One value gives an
    interval of (nan, nan): one seed says nothing about the spread. Raises ValueError on no values."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        raise ValueError("no values to average")
    m = sum(v) / len(v)
    if len(v) == 1:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    h = t * sd / math.sqrt(len(v))
    return m, m - h, m + h


def seed_cells(
    df,
    key: str = "final.ood_test.acc_last_novel",
    seed_cols: Sequence[str] = ("seed", "task_seed", "init_seed", "data_seed"),
):
    """Group a results table (one row per run, :func:`modicl.sweep.collect_results`) into cells of equal
    non-seed axes.

    Returns a list of dicts, one per cell: ``cell`` (axis → value), ``n`` seeds, ``phases`` (phase → count,
    in :data:`modicl.phases.PHASES` order, zero counts left out), ``seeds`` (seed → phase; the seed is
    labelled by every seed column that varies when task/init/data seeds are swept), ``per_seed`` (the same
    with each run's ``key``, its interval, its ✓/✗ ``pattern`` where the table has ``phase_pattern``, and
    the ``fingerprint`` of the same set where the table has one: {algorithm, rm, mr_only}), and
    ``mean``/``low``/``high``: the seed-mean of ``key`` with its 95 % t-interval; ``rm_ceiling``: ratio
    matching's seed-mean accuracy on the novel o.o.d.-test queries (NaN where the table lacks it).
    """
    axes = [
        c
        for c in df.columns
        if c in ("p", "n_id", "alpha", "n_layers") or ("." in c and not c.startswith(("final.", "best_ood.")))
    ]
    axes = [c for c in axes if c not in seed_cols and df[c].nunique() > 1]
    groups = df.groupby(axes) if axes else [((), df)]
    out = []
    for values, g in groups:
        values = values if isinstance(values, tuple) else (values,)
        counts = g["phase"].value_counts()
        m, lo, hi = mean_interval(g[key].tolist()) if g[key].notna().any() else (math.nan,) * 3
        varying = [c for c in seed_cols if c in df.columns and df[c].nunique() > 1] or ["seed"]
        per_seed = {}
        for _, r in g.iterrows():
            ci = (r.get(f"{key}_lo"), r.get(f"{key}_hi"))
            label = r["seed"] if varying == ["seed"] else ", ".join(f"{c} {r[c]}" for c in varying)
            per_seed[label] = {
                "phase": r["phase"],
                "acc": r[key],
                "ci": ci,
                "pattern": r.get("phase_pattern"),
                "fingerprint": _fingerprint_of(r, key.rsplit(".", 1)[0]),
            }
        rm = "final.ood_test.ratio_matching_last_novel"
        ceiling = float(g[rm].mean()) if rm in g and g[rm].notna().any() else math.nan
        out.append(
            {
                "cell": dict(zip(axes, values)),
                "n": len(g),
                "rm_ceiling": ceiling,
                "phases": {ph: int(counts[ph]) for ph in PHASES if ph in counts},
                "seeds": {sd: v["phase"] for sd, v in per_seed.items()},
                "per_seed": per_seed,
                "mean": m,
                "low": lo,
                "high": hi,
            }
        )
    return out


def _fingerprint_of(row, prefix: str) -> dict | None:
    """The algorithm label and the RM-solvable / MR-only accuracies of the set ``prefix`` (e.g.
    ``final.ood_test``) in one results row; None for tables written before the fingerprint existed."""
    algo = row.get(f"{prefix}.algorithm")
    if not isinstance(algo, str):
        return None
    return {"algorithm": algo, **{c: row.get(f"{prefix}.fp_{c}") for c in ("rm", "mr_only")}}


def format_fingerprint_short(fp: dict | None) -> str:
    """``; read as ratio matching (RM-solvable 0.85, MR-only 0.12)``, or nothing without a fingerprint."""
    if not fp:
        return ""
    num = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    return (
        f"; read as {ALGORITHM_LABELS.get(fp['algorithm'], fp['algorithm'])} "
        f"(RM-solvable {num(fp['rm'])}, MR-only {num(fp['mr_only'])})"
    )


def format_cells(
    cells: list[dict], key: str = "o.o.d. test, novel queries, last position", threshold: float = 0.5
) -> str:
    """The cells as text: one line each with its phase counts out of n seeds and the seed-mean accuracy,
    a line saying that a ✓ on o.o.d. test needs modular regression where ratio matching's ceiling there
    is below ``threshold``, then each seed's phase, accuracy and what its o.o.d. test reads as."""
    lines = []
    for c in cells:
        where = ", ".join(f"{k}={v}" for k, v in c["cell"].items()) or "all runs"
        counts = ", ".join(f"{ph} {k}/{c['n']}" for ph, k in c["phases"].items())
        ci = "" if math.isnan(c["low"]) else f" [{max(0.0, c['low']):.2f}, {min(1.0, c['high']):.2f}]"
        lines.append(f"{where}: {counts}; {key}: seed mean {c['mean']:.2f}{ci} (n = {c['n']} seeds)")
        ceiling = c.get("rm_ceiling", math.nan)
        if not math.isnan(ceiling) and ceiling < threshold:
            lines.append(
                f"    ratio matching answers only {ceiling:.2f} of the novel o.o.d.-test queries here "
                f"(< threshold {threshold:g}): a ✓ on o.o.d. test needs modular regression"
            )
        for seed, v in c.get("per_seed", {}).items():
            acc = "—" if v["acc"] is None or math.isnan(v["acc"]) else f"{v['acc']:.2f}"
            lo, hi = v["ci"]
            band = "" if lo is None or hi is None or math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
            # a pattern Table 1 does not name prints with its marks, so the reader sees which sets it solved
            phase = (
                f"{v['phase']} {v['pattern']}"
                if v["phase"] == "unlisted" and isinstance(v.get("pattern"), str)
                else v["phase"]
            )
            lines.append(
                f"    {'seed ' if isinstance(seed, numbers.Number) else ''}{seed}: {phase}, {acc}{band}"
                + format_fingerprint_short(v.get("fingerprint"))
            )
    return "\n".join(lines)


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact test that group 1 succeeds more often than group 2: the probability, under
    the hypergeometric null of equal rates given the margins, of k1 or more successes in group 1.

    Args:
        k1, n1: successes and seeds of group 1 (e.g. depth 2).
        k2, n2: successes and seeds of group 2 (e.g. depth 1).
    Raises:
        ValueError: counts outside 0 ≤ k ≤ n.
    Source: Fisher (1922); e.g. 5/5 against 0/5 gives 1/252 ≈ 0.004.
    """
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"successes must lie in 0…n: got {k1}/{n1} and {k2}/{n2}")
    k, n = k1 + k2, n1 + n2
    total = math.comb(n, k)
    return sum(math.comb(n1, i) * math.comb(n2, k - i) for i in range(k1, min(k, n1) + 1)) / total


def outside_patterns(g, phase: str = "unlisted") -> list[str]:
    """The ✓/✗ patterns (``phase_pattern``) of the runs in results table ``g`` whose ``phase`` is
    ``phase``, sorted; empty for a Table 1 phase (its name says its pattern) or a table without patterns."""
    if "phase_pattern" not in g or phase in PHASES[:-1]:
        return []
    return sorted(set(g.loc[g["phase"] == phase, "phase_pattern"].dropna()))


def cells_markdown(df, axes: Sequence[str] = ("n_id", "alpha", "n_layers")) -> str:
    """A results table (one row per seed) as a Markdown table, one row per cell of ``axes`` that vary:
    the seeds in each phase; the seed-mean novel-query last-position accuracy of each set at the end and
    of o.o.d. test at the checkpoint selected on the validation o.o.d. tasks (early stopping), each with its
    95 % t-interval (:func:`mean_interval`), and the paired per-seed difference early stop − end (a transient
    o.o.d. phase makes it positive); and, for o.o.d. test, the null models beside it (seed means): chance 1/p,
    ratio matching and modular regression on the same novel queries, and copying from the context on all
    last-position queries (it scores 0 on novel ones by construction); where the table has the algorithm
    fingerprint, the seeds per label o.o.d. test reads as and the seed-mean accuracy on its RM-solvable and
    MR-only novel queries. With ``p``, n_id is
    also given as a fraction of the p² tasks (PAPER.md Fig. 1b's boundary is ≈ 30 % at p = 29)."""
    import pandas as pd

    keys = [a for a in axes if a in df.columns and df[a].nunique() > 1]
    groups = df.groupby(keys) if keys else [((), df)]

    def iv(values) -> str:
        m, lo, hi = mean_interval(values)
        return f"{m:.2f}" if math.isnan(lo) else f"{m:.2f} [{max(0.0, lo):.2f}, {min(1.0, hi):.2f}]"

    head = [*keys] + (["n_id / p²"] if "n_id" in keys and "p" in df.columns else []) + ["seeds", "phases (seeds)"]
    head += [f"{SET_LABELS[s]}" for s in SETS] + [
        "o.o.d. test, early stop",
        "early stop − end (paired)",
        "o.o.d. test nulls: chance / RM / MR",
        "copy, all queries",
    ]
    fp = "final.ood_test.algorithm" in df.columns
    if fp:
        head += ["o.o.d. test read as (seeds)", "o.o.d. test: RM-solvable / MR-only"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for values, g in groups:
        values = values if isinstance(values, tuple) else (values,)
        row = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
        if "n_id / p²" in head:
            row.append(f"{int(g['n_id'].iloc[0]) / int(g['p'].iloc[0]) ** 2:.0%}")
        counts = g["phase"].value_counts()

        def named(ph: str) -> str:  # seeds in no Table 1 phase show their ✓/✗ patterns
            pats = outside_patterns(g, ph)
            return f"{ph.replace('_', ' ')} {int(counts[ph])}" + (f" ({', '.join(pats)})" if pats else "")

        row += [
            str(len(g)),
            ", ".join(named(ph) for ph in [*PHASES, *sorted(set(counts.index) - set(PHASES))] if ph in counts),
        ]
        row += [iv(g[f"final.{s}.acc_last_novel"]) for s in SETS]
        early = "best_ood.ood_test.acc_last_novel"
        if early in g:
            diff = mean_interval(g[early] - g["final.ood_test.acc_last_novel"])
            row += [
                iv(g[early]),
                f"{diff[0]:+.2f}" + ("" if math.isnan(diff[1]) else f" [{diff[1]:+.2f}, {diff[2]:+.2f}]"),
            ]
        else:
            row += ["—", "—"]
        mean = lambda c: f"{g[c].mean():.2f}" if c in g and pd.notna(g[c]).any() else "—"  # noqa: E731
        nulls = [f"{1 / int(g['p'].iloc[0]):.2f}" if "p" in g else "—"]
        nulls += [mean(f"final.ood_test.{b}_last_novel") for b in ("ratio_matching", "modular_regression")]
        row += [" / ".join(nulls), mean("final.ood_test.copy_last")]
        if fp:
            reads = g["final.ood_test.algorithm"].value_counts()
            row += [
                ", ".join(f"{ALGORITHM_LABELS[a]} {int(reads[a])}" for a in ALGORITHMS if a in reads) or "—",
                " / ".join(
                    iv(g[f"final.ood_test.fp_{c}"].dropna()) if g[f"final.ood_test.fp_{c}"].notna().any() else "—"
                    for c in ("rm", "mr_only")
                ),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def window_mean(rows: Sequence[dict], set_name: str, lo: float, hi: float, key: str = "acc_last_novel") -> float:
    """Mean of ``rows[i][set_name][key]`` over the evaluations with lo·T < step ≤ hi·T, T the last step:
    a fixed stretch of training chosen before looking at the curve, so that comparing two stretches is
    free of the optimism of picking a curve's peak. NaN when no evaluation falls in it."""
    last = rows[-1]["step"]
    v = [r[set_name][key] for r in rows if lo * last < r["step"] <= hi * last and r[set_name].get(key) is not None]
    return sum(v) / len(v) if v else math.nan


def transient_markdown(
    curves: dict, sets: Sequence[str] = ("ood_train", "ood_test"), mid=(0.25, 0.5), end=(0.75, 1.0)
) -> str:
    """The transient phase as a Markdown table (PAPER.md §3, Fig. 3b: o.o.d. accuracy that rises, then
    falls as training goes on). Per group (e.g. depth) and set: the seed-mean accuracy over the middle of
    training (``mid``, fractions of the run) and over its end (``end``), and the paired per-seed
    difference end − middle with its 95 % t-interval; a transient makes it negative.

    Args:
        curves: group label → list of per-seed metrics.jsonl row lists.
    """
    head = ["group", "seeds"]
    for s in sets:
        head += [
            f"{SET_LABELS[s]}, middle ({mid[0]:g}–{mid[1]:g})",
            f"{SET_LABELS[s]}, end ({end[0]:g}–{end[1]:g})",
            f"{SET_LABELS[s]}, end − middle (paired)",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, runs in curves.items():
        row = [str(group), str(len(runs))]
        for s in sets:
            a = [window_mean(r, s, *mid) for r in runs]
            b = [window_mean(r, s, *end) for r in runs]
            d = mean_interval([y - x for x, y in zip(a, b)])
            band = "" if math.isnan(d[1]) else f" [{d[1]:+.2f}, {d[2]:+.2f}]"
            row += [f"{mean_interval(a)[0]:.2f}", f"{mean_interval(b)[0]:.2f}", f"{d[0]:+.2f}{band}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# shot bands of the algorithmic-shift table: few shots, where modular regression rarely has two independent
# examples, up to many shots, where the paper's deeper models answer by it (PAPER.md §4.3, Fig. 5)
SHIFT_BANDS = ((2, 7), (8, 15), (16, 31), (32, 63), (64, 127))


def last_fingerprints(runs: Sequence[Sequence[dict]], set_name: str) -> list[dict]:
    """The per-shot fingerprint ({class: {acc: [n_ctx], n: [n_ctx]}}) of ``set_name`` at each run's last
    evaluation (runs: per-seed metrics.jsonl row lists); runs without it are left out."""
    return [r[-1][set_name]["fingerprint_kshot"] for r in runs if r and "fingerprint_kshot" in r[-1].get(set_name, {})]


def fingerprint_hits(fp_kshot: dict, cls: str, k: int) -> int:
    """The model's correct answers on the novel queries of class ``cls`` at shot k (accuracy × count)."""
    return round((fp_kshot[cls]["acc"][k] or 0.0) * fp_kshot[cls]["n"][k])


def band_accuracy(fp_kshot: dict, cls: str, lo: int, hi: int) -> float | None:
    """Accuracy on the novel queries of fingerprint class ``cls`` (rm, mr_only, neither) at shots k in
    [lo, hi] of one evaluation's ``fingerprint_kshot`` ({class: {acc: [n_ctx], n: [n_ctx]}}; shot k is
    position k, the query after k examples); None when the band holds no such query."""
    ns = fp_kshot[cls]["n"]
    ks = range(lo, min(hi, len(ns) - 1) + 1)
    n = sum(ns[k] for k in ks)
    return sum(fingerprint_hits(fp_kshot, cls, k) for k in ks) / n if n else None


def shift_markdown(curves: dict, set_name: str = "ood_test", bands: Sequence[tuple[int, int]] = SHIFT_BANDS) -> str:
    """The algorithmic shift (PAPER.md §4.3, Fig. 5) as a Markdown table: per group (e.g. depth) and shot
    band, the seed-mean accuracy on the novel queries that ratio matching answers (RM) and on those only
    modular regression answers (MR-only), at each run's last evaluation of ``set_name``, with 95 %
    t-intervals over seeds and the seeds that had such queries. A model that runs ratio matching stays
    near chance on MR-only queries at every k; one that shifts to modular regression rises there with k.

    Args:
        curves: group label → list of per-seed metrics.jsonl row lists (rows without the per-shot
            fingerprint are skipped)."""
    n_ctx = max((len(fp["rm"]["n"]) for runs in curves.values() for fp in last_fingerprints(runs, set_name)), default=0)
    bands = [(lo, min(hi, n_ctx - 1)) for lo, hi in bands if lo <= n_ctx - 1]
    head = ["group", "class"] + [f"k {lo}–{hi}" for lo, hi in bands]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, runs in curves.items():
        fps = last_fingerprints(runs, set_name)
        for cls, label in (("rm", "RM-solvable"), ("mr_only", "MR-only")):
            cells = []
            for lo, hi in bands:
                v = [a for a in (band_accuracy(fp, cls, lo, hi) for fp in fps) if a is not None]
                if not v:
                    cells.append("–")
                    continue
                m, a, b = mean_interval(v)
                cells.append(
                    f"{m:.2f}" + ("" if math.isnan(a) else f" [{max(0.0, a):.2f}, {min(1.0, b):.2f}]") + f" ({len(v)})"
                )
            lines.append("| " + " | ".join([str(group), label, *cells]) + " |")
    return "\n".join(lines)
