"""Branching a run: a new run that starts from a kept checkpoint of another with changed training settings
(``modicl train --from RUN@step:N --out NEW --train.lr …``).

The branch continues the parent exactly (weights, optimizer moments, data stream, step counter) under its
own config, which may differ from the parent's in training settings only (lr, weight decay and their
schedule, steps, Grokfast, evaluation): the question a branch answers is "what if training had gone on
differently from step N", e.g. a lower lr or a higher weight decay in a transient o.o.d. phase (PAPER.md
§3). Its metrics.jsonl starts with the parent's rows up to step N, its ``best_ood`` is selected among step N
and its own later evaluations, and ``parent.json`` records the parent run, the step and what changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError, RunConfig
from .evaluation import selection_score
from .fields import FIELD_ROLES, differences
from .hashing import config_hash
from .history import BEST_OOD, file_stem, ref_of
from .rundir import (
    CheckpointError,
    RunDir,
    check_run_out,
    load_checkpoint,
    load_state,
    read_metrics,
    save_checkpoint,
    write_json,
)


def split_ref(text: str) -> tuple[Path, str]:
    """``"runs/a@step:500"`` → (Path("runs/a"), "step:500"); a bare run directory means its ``last``."""
    run, sep, ref = text.rpartition("@")
    return (Path(run), ref) if sep and run else (Path(text), "last")


def _weights_step(run_dir: Path, ref: str) -> int | None:
    """The step recorded in a checkpoint's weights file (None when it records none)."""
    from safetensors import safe_open

    with safe_open(str(RunDir(run_dir).checkpoint(file_stem(ref))), "pt") as f:
        step = (f.metadata() or {}).get("step")
    return None if step is None else int(step)


def _with_hyperparameters(saved: dict, fresh: dict) -> dict:
    """An optimizer state dict with the saved per-parameter state and the fresh optimizer's group settings
    (betas, eps, …): ``load_state_dict`` would otherwise bring back the parent's. Recurses into the
    ``{adamw, muon}`` state of :class:`modicl.steps.MuonAdamW`."""
    if "param_groups" in saved:
        groups = [{**f, "params": s["params"]} for s, f in zip(saved["param_groups"], fresh["param_groups"])]
        return {**saved, "param_groups": groups}
    return {k: _with_hyperparameters(v, fresh[k]) for k, v in saved.items()}


def branch_run(parent_dir: str | Path, ref: str, out: str | Path, cfg: RunConfig) -> dict:
    """Make ``out`` a run that continues ``parent_dir`` from its checkpoint ``ref`` (``step:N`` or ``last``)
    under ``cfg``; training it with ``resume=True`` (:func:`modicl.training.train`) runs the branch.

    Args:
        parent_dir: the parent run directory.
        ref: a checkpoint that carries the optimizer state: ``last`` or a kept ``step:N``
            (``train.keep_checkpoints``); ``best_ood`` keeps weights only.
        out: the new run directory (absent or empty).
        cfg: the branch's config: the parent's with training settings changed.
    Returns:
        The record written to ``out/parent.json``: parent path, checkpoint, step, parent config hash and
        the changed fields (name → [parent, branch]).
    Raises:
        ConfigError: ``cfg`` changes the task, model, seeds or optimizer; ``cfg.train.steps`` is not past
            the branch step; ``out`` holds files.
        CheckpointError: the parent or its checkpoint (or its optimizer state) is missing, or the
            checkpoint was rewritten while it was read (a parent still training).
    """
    import torch

    from .steps import build_optimizer

    parent_dir, out = Path(parent_dir), Path(out)
    if ref == BEST_OOD:
        raise ConfigError(
            f"checkpoint best_ood of {parent_dir} keeps no optimizer state; branch from last or a kept step:N"
        )
    ck = load_checkpoint(parent_dir, ref)
    state = load_state(parent_dir, ref)
    if state.get("step", ck.step) != ck.step or _weights_step(parent_dir, ref) not in (None, ck.step):
        raise CheckpointError(
            f"checkpoint {ref_of(ref)} of {parent_dir} was rewritten while it was read (the parent is "
            "still training); run the same command again"
        )
    changed = differences(ck.config, cfg)
    fixed = [k for k in changed if not FIELD_ROLES[k].branch]
    if fixed:
        raise ConfigError(
            f"a branch keeps its parent's task, model, seeds and optimizer; {', '.join(fixed)} "
            f"{'differs' if len(fixed) == 1 else 'differ'} from the parent (train a new run for those)"
        )
    if cfg.train.steps <= ck.step:
        raise ConfigError(
            f"train.steps = {cfg.train.steps} does not go past the branch point (step {ck.step}); give more steps"
        )
    check_run_out(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; a branch starts in a new directory")
    rows = read_metrics(parent_dir, ck.step)
    rd = RunDir(out)
    rd.begin(cfg)
    rd.write_tasks(ck.tasks)
    rd.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = build_optimizer(ck.model.train(), cfg.train, torch.device("cpu")).state_dict()
    row = rows[-1]
    state = {
        **state,
        "optimizer": _with_hyperparameters(state["optimizer"], fresh),
        "best": {"acc": selection_score(row), "step": ck.step},
    }
    state.pop("step", None)
    save_checkpoint(out, BEST_OOD, ck.model, cfg, ck.tasks, ck.step, metrics=row)
    save_checkpoint(out, "last", ck.model, cfg, ck.tasks, ck.step, metrics=row, state=state)
    record = {
        "parent": str(parent_dir.resolve()),
        "checkpoint": ref_of(ref),
        "step": ck.step,
        "parent_config_hash": config_hash(ck.config),
        "changed": changed,
    }
    write_json(rd.parent, record)
    return record
