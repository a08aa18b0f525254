"""modicl: in-context learning and skill composition on modular arithmetic (He, Doshi, Das & Gromov 2024).

Library layers, each usable from a notebook: :mod:`modicl.config` (configs and presets) →
:mod:`modicl.tasks` (task vectors, splits) → :mod:`modicl.data` (batches) → :mod:`modicl.model`
(the decoder, hook points) → :mod:`modicl.train` (the loop, checkpoints) → :mod:`modicl.metrics`
(four-set accuracies, k-shot curves, phases) → :mod:`modicl.plots`. The ``modicl`` CLI wraps them.
"""

__version__ = "0.1.0"
