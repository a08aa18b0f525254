"""Evaluating a run's model on the run's sets: the tensors of its task set, its five evaluation sets, the
seed of each evaluation's sequences, and the score that selects the early-stopping checkpoint.

The counting itself (accuracies, intervals, null models) is :func:`modicl.metrics.evaluate`; this module
only knows how a run's :class:`~modicl.tasks.TaskSet` and config map onto it (PAPER.md §1.7: i.d. or
o.o.d. tasks × training or held-out inputs, plus the validation o.o.d. tasks that pick ``best_ood``).
Training, ``modicl eval`` and the ensembles all evaluate through here, and it imports no training code.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .config import ConfigError, RunConfig, check_seed
from .history import BEST_OOD
from .metrics import PHASE_KEY, VAL_SET, evaluate
from .phases import classify_phase, pattern_text
from .tasks import TaskSet


def task_tensors(tasks: TaskSet, device: torch.device) -> dict[str, Tensor]:
    """The task set's arrays as int64 tensors on ``device``, keyed by TaskSet field name."""
    keys = ("id_tasks", "ood_tasks", "train_pairs", "test_pairs", "val_tasks")
    return {k: torch.as_tensor(getattr(tasks, k), device=device) for k in keys}


def eval_sets(t: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """The four sets of PAPER.md §1.7 and the validation set (validation o.o.d. tasks × held-out
    inputs, which selects the early-stopping checkpoint) as (tasks, pairs)."""
    return {
        "id_train": (t["id_tasks"], t["train_pairs"]),
        "id_test": (t["id_tasks"], t["test_pairs"]),
        "ood_train": (t["ood_tasks"], t["train_pairs"]),
        "ood_test": (t["ood_tasks"], t["test_pairs"]),
        VAL_SET: (t["val_tasks"], t["test_pairs"]),
    }


def evaluate_run(
    model: nn.Module,
    cfg: RunConfig,
    tasks: TaskSet,
    *,
    sequences: int,
    generator: torch.Generator,
    autocast: contextlib.AbstractContextManager,
) -> dict[str, dict]:
    """Evaluate ``model`` on the four sets of a run (PAPER.md §1.7) and its validation set, with the
    run's sequence format and inputs drawn independently per sequence, with replacement whatever the
    run's training sampler (``task.replacement``).

    Returns {set: result}; see :func:`modicl.metrics.evaluate` for the keys.
    """
    device = next(model.parameters()).device
    return evaluate(
        model,
        eval_sets(task_tensors(tasks, device)),
        n_ctx=cfg.task.n_ctx,
        p=cfg.task.p,
        sequences=sequences,
        batch_size=cfg.train.eval_batch_size,
        generator=generator,
        autocast=autocast,
        replacement=True,
    )


def evaluate_checkpoint(
    run_dir: str | Path,
    checkpoint: str = BEST_OOD,
    *,
    sequences: int = 4096,
    seed: int = 12345,
    device: str = "auto",
) -> dict:
    """Re-evaluate a saved checkpoint of a run on its four sets (PAPER.md §1.7: i.d. / o.o.d. tasks ×
    training / held-out inputs) and its validation set: what ``modicl eval`` prints and writes, without
    writing anything.

    Args:
        run_dir: the run directory.
        checkpoint: ``best_ood``, ``last`` or ``step:N`` of a kept history.
        sequences: sequences per set (≥ 1), drawn with replacement from the set's tasks and inputs.
        seed: seed of the evaluation sequences, in [0, 2**63 - 1]; the same seed gives the same numbers.
        device: ``auto``, ``cpu``, ``cuda`` …; the run's dtype is used (bf16 falls back where unsupported).
    Returns:
        {checkpoint, step, sequences_requested, sequences_per_set, seed, phase, phase_pattern, and per set
        name (id_train, id_test, ood_train, ood_test, ood_val) the result of :func:`modicl.metrics.evaluate`:
        accuracies with 95 % intervals, k-shot curves, null models and the algorithm fingerprint}.
    Raises:
        ConfigError: sequences < 1, a seed out of range, an unknown device.
        CheckpointError: no run, or no such checkpoint, in ``run_dir``.
    """
    from .rundir import load_checkpoint
    from .runtime import autocast_for, resolve_device, resolve_dtype

    if sequences < 1:
        raise ConfigError(f"sequences = {sequences} must be ≥ 1")
    check_seed(seed, "seed =")
    dev = resolve_device(device)
    ck = load_checkpoint(run_dir, checkpoint, dev)
    cfg = ck.config
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    autocast = autocast_for(dev, resolve_dtype(cfg.train.dtype, dev))
    res = evaluate_run(ck.model, cfg, ck.tasks, sequences=sequences, generator=g, autocast=autocast)
    return {
        "checkpoint": checkpoint,
        "step": ck.step,
        "sequences_requested": sequences,
        "sequences_per_set": {name: r["n_sequences"] for name, r in res.items()},
        "seed": seed,
        "phase": classify_phase(res, cfg.phase_threshold),
        "phase_pattern": pattern_text(res, cfg.phase_threshold),
        **res,
    }


def eval_seed(seed: int, step: int) -> int:
    """Seed of the evaluation sequences at ``step`` from the run's data seed: fresh draws each time,
    identical on resume."""
    return int(np.random.SeedSequence([seed, step, 0xE7A1]).generate_state(1)[0])


def selection_score(row: dict) -> float:
    """The early-stopping score of a metrics row: novel-query last-position accuracy on the validation
    o.o.d. tasks (the phase's metric, never a test set); −1 where the row has none."""
    val = row.get(VAL_SET) or {}
    return -1.0 if val.get(PHASE_KEY) is None else float(val[PHASE_KEY])
