"""modicl: in-context learning and skill composition on modular arithmetic (He, Doshi, Das & Gromov 2024).

Library layers, each usable from a notebook: :mod:`modicl.config` (configs; :mod:`modicl.presets`,
:mod:`modicl.hashing`) → :mod:`modicl.tasks` (task vectors, splits) → :mod:`modicl.data` (batches) →
:mod:`modicl.model` (the decoder, hook points) → :mod:`modicl.steps` (schedule, AdamW, loss, step
backends) → :mod:`modicl.train` (the loop over N runs), which keeps each run in :mod:`modicl.rundir`
and evaluates through
:mod:`modicl.evaluation` and :mod:`modicl.metrics` (four-set accuracies, k-shot curves, phases) →
:mod:`modicl.plots`; :mod:`modicl.runtime` resolves device, dtype, threads and compilation for every
entry point; :mod:`modicl.ensemble` (many runs in one process) → :mod:`modicl.sweep` (idempotent grids,
results tables) → :mod:`modicl.sweep_plots` (phase diagrams); :mod:`modicl.algorithms` (ratio matching,
modular regression, Bayes) → :mod:`modicl.analysis` (interpretability) → :mod:`modicl.analysis_plots`,
run by :mod:`modicl.analyze`.
The ``modicl`` CLI wraps them.
"""

__version__ = "0.1.0"
