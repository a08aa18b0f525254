"""modicl: in-context learning and skill composition on modular arithmetic (He, Doshi, Das & Gromov 2024).

The spine, flat, in the order data flows: :mod:`modicl.family` (the task family) and :mod:`modicl.config`
(configs; :mod:`modicl.presets`, :mod:`modicl.hashing`) → :mod:`modicl.tasks` (task vectors, splits) →
:mod:`modicl.data` (batches) → :mod:`modicl.model` (the decoder, hook points, its costs) →
:mod:`modicl.steps` (schedule, optimizers, loss, step backends) → :mod:`modicl.training` (the loop over N
runs; :mod:`modicl.ensemble` for many in one process), which keeps each run in :mod:`modicl.rundir` and
evaluates through :mod:`modicl.evaluation` and :mod:`modicl.metrics` (four-set accuracies, k-shot curves,
phases, the null models of :mod:`modicl.algorithms`); :mod:`modicl.runtime` resolves device, dtype,
threads and compilation for every entry point.

The outer rooms, each a subpackage: :mod:`modicl.report` (a run's summary and figures),
:mod:`modicl.analysis` (interpretability: the registered analyses, their numerics and figures),
:mod:`modicl.sweep` (idempotent grids, executors, results tables, seed cells and the sweep figures) and
:mod:`modicl.cli` (the ``modicl`` command, a thin layer over all of them); :mod:`modicl.figures` holds
the drawing primitives they share.

The names a notebook needs first are importable from the package itself (loaded on first use, so
``import modicl`` does not import torch): :func:`train`, :func:`evaluate` (a saved checkpoint, as
``modicl eval``), :func:`load_checkpoint`, :func:`preset`, :func:`run_sweep`, :class:`SweepSpec` and
:func:`load_spec` (a built-in sweep or a TOML file).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name → (module, attribute); resolved by __getattr__ on first access
_PUBLIC = {
    "train": (".training", "train"),
    "evaluate": (".evaluation", "evaluate_checkpoint"),
    "load_checkpoint": (".rundir", "load_checkpoint"),
    "preset": (".presets", "preset"),
    "run_sweep": (".sweep.local", "run_sweep"),
    "SweepSpec": (".sweep.spec", "SweepSpec"),
    "load_spec": (".sweep.spec", "load_spec"),
}
__all__ = ["SweepSpec", "__version__", "evaluate", "load_checkpoint", "load_spec", "preset", "run_sweep", "train"]

if TYPE_CHECKING:
    from .evaluation import evaluate_checkpoint as evaluate
    from .presets import preset
    from .rundir import load_checkpoint
    from .sweep.local import run_sweep
    from .sweep.spec import SweepSpec, load_spec
    from .training import train


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'modicl' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    # the public API only (tab completion in a notebook), not this module's helpers or loaded submodules
    return sorted(__all__)
