"""A finished run's report: ``summary.json`` (its phase at the end and at the validation-selected checkpoint,
PAPER.md Table 1, with every set's accuracies and nulls) and its figures in RUN_DIR/plots. Read from the run
directory alone, so ``modicl plot RUN_DIR`` redraws a run without importing the training loop.
"""

from __future__ import annotations

from pathlib import Path

from ..hashing import config_hash
from ..history import BEST_OOD
from ..metrics import PHASE_KEY, SETS, VAL_SET
from ..phases import PHASE_LABELS, classify_phase, pattern_text, summary_of_set
from ..rundir import CheckpointError, RunDir, load_checkpoint, load_state, read_json, read_metrics, write_json
from ..staging import staged


def draw_run(run_dir: str | Path, rows: list[dict] | None = None, best_step: int | None = None) -> list[Path]:
    """Draw a run's figures into RUN_DIR/plots from its metrics (``modicl plot RUN_DIR`` redraws them):
    learning curves, progress measures with the phase of each evaluation, k-shot accuracy. ``best_step``
    defaults to the step of the ``best_ood`` checkpoint. Returns the paths written.

    Raises:
        CheckpointError: no metrics or no checkpoint yet.
    """
    from .figures import attention_progress_plot, kshot_plot, learning_curves_plot

    rd = RunDir(run_dir)
    cfg = rd.read_config()
    rows = read_metrics(rd.path) if rows is None else rows
    if not rows:
        raise CheckpointError(f"{run_dir} has no evaluations yet; train it first")
    if best_step is None:
        best_step = load_checkpoint(run_dir, BEST_OOD).step
    best_row = next((r for r in rows if r["step"] == best_step), rows[-1])
    names = ["learning_curves.png", "kshot.png"]
    with staged(rd.plots) as stage:  # the old figures stay until every new one is written
        learning_curves_plot(rows, stage / names[0], p=cfg.task.p, best_step=best_step)
        if attention_progress_plot(
            rows, stage / "attention_progress.png", best_step=best_step, threshold=cfg.phase_threshold
        ):
            names.append("attention_progress.png")
        kshot_plot({"final": rows[-1], "best o.o.d. (validation)": best_row}, stage / names[1], p=cfg.task.p)
    return [rd.plots / n for n in names]


def write_summary(run_dir: Path, **extra) -> dict:
    """Write ``summary.json`` and the plots from the run's metrics and checkpoints; return the summary."""
    rd = RunDir(run_dir)
    cfg = rd.read_config()
    rows = read_metrics(run_dir)
    if rd.parent.exists():  # a branch (modicl.branch) names where it came from
        extra["parent"] = read_json(rd.parent)
    state = load_state(run_dir)
    final = rows[-1]
    best_row = next(r for r in rows if r["step"] == state["best"]["step"])
    thr = cfg.phase_threshold
    summary = {
        "phase": classify_phase(final, thr),
        "phase_label": PHASE_LABELS[classify_phase(final, thr)],
        "phase_pattern": pattern_text(final, thr),
        "phase_best_ood": classify_phase(best_row, thr),
        "phase_pattern_best_ood": pattern_text(best_row, thr),
        "phase_threshold": thr,
        "phase_metric": f"{PHASE_KEY} (novel-query last-position accuracy)",
        "best_ood_selected_on": f"{VAL_SET}.{PHASE_KEY}"
        if VAL_SET in best_row
        else "ood_test.acc (run without validation tasks)",
        "steps": final["step"],
        "wall_s": state["elapsed"]["wall_s"],
        "train_s": state["elapsed"]["train_s"],
        "tokens_per_s": extra.pop("tokens_per_step") * final["step"] / max(state["elapsed"]["train_s"], 1e-9),
        "config_hash": config_hash(cfg),
        **extra,
        "final": {s: summary_of_set(final[s], thr, s.startswith("id_")) for s in SETS if s in final},
        BEST_OOD: {
            "step": best_row["step"],
            **{s: summary_of_set(best_row[s], thr, s.startswith("id_")) for s in (*SETS, VAL_SET) if s in best_row},
        },
    }
    write_json(rd.summary, summary)
    draw_run(run_dir, rows, best_row["step"])
    return summary
