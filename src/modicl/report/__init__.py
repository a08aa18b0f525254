"""A run's report: :mod:`~modicl.report.summary` writes ``summary.json`` (its phase at the end and at the
validation-selected checkpoint, PAPER.md Table 1) and draws its figures, which
:mod:`~modicl.report.figures` holds (learning curves, progress measures, k-shot accuracy). Both read the
run directory alone, so ``modicl plot RUN_DIR`` redraws a run without importing the training loop.
"""

from .summary import draw_run, write_summary

__all__ = ["draw_run", "write_summary"]
