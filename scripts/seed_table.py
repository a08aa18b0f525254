"""Every seed of a sweep as one Markdown row, in the columns of the seed tables of docs/quick-preset.md and
docs/REPRODUCTION.md: the final phase, the four sets' novel last-position accuracy, the o.o.d.-test interval,
the algorithm fingerprint on o.o.d. test, ratio matching's ceiling on the same queries, the plateau escape
(first evaluation with o.o.d. train ≥ 0.3), the first ✓✓✓✓ evaluation, the early-stop checkpoint's phase,
wall time and numerics; then a line per group with the o.o.d.-generalization count (Wilson 95 %).

    python scripts/seed_table.py SWEEP_DIR                    # one table per value of the swept axes
    python scripts/seed_table.py SWEEP_DIR --group n_layers   # group by one column of results.csv

Rows come from each finished run's summary.json and metrics.jsonl; unfinished points are left out and
counted below their group.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from modicl.metrics import PHASE_KEY, SETS, wilson_interval
from modicl.rundir import read_metrics
from modicl.sweep.spec import point_dir

HEAD = (
    "seed",
    "phase (final)",
    "novel last-position acc i.d. train / i.d. test / o.o.d. train / o.o.d. test",
    "o.o.d. test 95 % CI (n)",
    "RM-solvable acc (n)",
    "MR-only acc (n)",
    "o.o.d. test read as",
    "RM ceiling",
    "o.o.d. train ≥ 0.3 at step",
    "first ✓✓✓✓ step",
    "phase at early stop (step)",
    "wall s",
    "CPU path, threads, dtype",
)


def _acc(d: dict) -> str:
    if d.get("acc") is None:
        return f"– ({d['n']})"
    lo, hi = d["acc_ci"]
    return f"{d['acc']:.2f} [{lo:.2f}, {hi:.2f}] ({d['n']})"


def seed_row(run_dir: Path, seed: int) -> str:
    """One seed's Markdown row (columns :data:`HEAD`)."""
    s = json.loads((run_dir / "summary.json").read_text())
    fin, ood, threshold = s["final"], s["final"]["ood_test"], s["phase_threshold"]
    rows = read_metrics(run_dir)
    escape = next((r["step"] for r in rows if (r["ood_train"].get(PHASE_KEY) or 0) >= 0.3), "–")
    first = next((r["step"] for r in rows if all((r[x].get(PHASE_KEY) or 0) >= threshold for x in SETS)), "–")
    lo, hi = ood["acc_last_novel_ci"]
    fp = ood.get("fingerprint", {})
    cells = [
        str(seed),
        f"{s['phase_pattern']} {s['phase_label']}",
        " / ".join(f"{fin[x][PHASE_KEY]:.2f}" for x in SETS),
        f"[{lo:.2f}, {hi:.2f}] ({ood['n_novel_last']})",
        _acc(fp["rm"]) if fp else "–",
        _acc(fp["mr_only"]) if fp else "–",
        str(ood.get("algorithm", "–")).replace("_", " "),
        f"{ood['baselines']['ratio_matching']['acc_last_novel']:.2f}",
        str(escape),
        str(first),
        f"{s['phase_pattern_best_ood']} ({s['best_ood']['step']})",
        f"{s['wall_s']:.0f}",
        f"{s['cpu_kind']} {s['threads']}t {s['dtype']}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument(
        "--group", nargs="*", default=None, help="results.csv columns to group by (default: the swept axes but seed)"
    )
    args = ap.parse_args()
    df = pd.read_csv(args.sweep_dir / "results.csv")
    spec = json.loads((args.sweep_dir / "spec.json").read_text())
    group = (
        args.group
        if args.group is not None
        else [c for c in df.columns if c in ("p", "n_id", "alpha", "n_layers") and df[c].nunique() > 1]
        or [c for c in spec.get("axes", {}) if c != "seed" and c in df.columns]
    )
    total = (
        len(json.loads((args.sweep_dir / "index.json").read_text()))
        if (args.sweep_dir / "index.json").exists()
        else None
    )
    for key, g in df.groupby(group) if group else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        print("\n" + (", ".join(f"{k} {v}" for k, v in zip(group, key)) or args.sweep_dir.name) + "\n")
        print("| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD))
        done = g[g["phase"].notna()].sort_values("seed")
        for r in done.itertuples():
            print(seed_row(point_dir(args.sweep_dir, r.hash), int(r.seed)))
        k, n = int((done["phase"] == "ood_generalization").sum()), len(done)
        lo, hi = wilson_interval(k, n)
        print(f"\no.o.d. generalization {k}/{n} (Wilson 95 % [{lo:.2f}, {hi:.2f}])" if n else "\nno finished run")
    if total is not None and total > len(df):
        print(f"\n{total - len(df)} points not finished")


if __name__ == "__main__":
    main()
