"""Opening a trained model up (PAPER.md §4): :mod:`~modicl.analysis.registry` holds the analyses, each one
function registered by name and run on a checkpoint by :func:`run_analyses` (``modicl analyze``);
:mod:`~modicl.analysis.measures` their numerics (similarities, PCA, head scores, the same-line gap), and
:mod:`~modicl.analysis.figures` their drawings. The reference algorithms they compare against are
:mod:`modicl.algorithms`, which the metrics use too.
"""

from .registry import ANALYSES, analysis_dir, run_analyses

__all__ = ["ANALYSES", "analysis_dir", "run_analyses"]
