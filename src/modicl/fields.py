"""The role of every config field, in one registry that hashing, resume, ensembles and branches read.

Two configs are compared in four places: a run directory's name (:mod:`modicl.hashing`), a resume (which may
change how a run executes, not what it computes), an ensemble (whose members may differ only in their data
and seeds) and a branch (which may change training settings that leave the parent's weights meaningful).
:data:`FIELD_ROLES` says, once per field, which of these a field is free in; adding a field to a config
class means one entry here (``tests/test_config.py`` fails otherwise). This module imports no torch code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import PARTS, RunConfig, TrainConfig, to_dict


@dataclass(frozen=True)
class FieldRole:
    """What one config field is to the code that compares two configs (hashing, resume, ensembles,
    branches); :data:`FIELD_ROLES` holds one per field.

    Attributes:
        execution: changes how a run executes, not what it computes: a resume may change it and a sweep
            point's directory name does not depend on it (:func:`without_execution`).
        added: added after run directories were first named: left out of :func:`modicl.hashing.config_hash`
            while it holds its default, so older run directories keep their names.
        member: may differ between the members of one ensemble (it changes only a member's data, or, for
            threads, nothing the members compute; :func:`modicl.ensemble.ensemble_key`).
        branch: a branch (``modicl train --from``) may change it: training settings that leave the
            parent's weights and optimizer state meaningful.
    """

    execution: bool = False
    added: bool = False
    member: bool = False
    branch: bool = False


_TASK, _MEMBER, _TRAIN = FieldRole(), FieldRole(member=True), FieldRole(branch=True)
_ADDED, _ADDED_MEMBER, _ADDED_TRAIN = (
    FieldRole(added=True),
    FieldRole(added=True, member=True),
    FieldRole(added=True, branch=True),
)
_EXECUTION, _ADDED_EXECUTION = FieldRole(execution=True), FieldRole(execution=True, added=True)

# The role of every field of RunConfig, by dotted name ("part.field", or "field" at the top level). Adding
# a field to a config class means adding it here (tests/test_config.py fails otherwise); a field added
# after run directories exist is ``added`` and must default to what runs before it computed.
FIELD_ROLES: dict[str, FieldRole] = {
    "task.p": _TASK,
    "task.n_var": _ADDED,
    "task.rule": _MEMBER,
    "task.n_id": _MEMBER,
    "task.n_ood": _MEMBER,
    "task.alpha": _MEMBER,
    "task.n_ctx": _TASK,
    "task.shared_inputs": _MEMBER,
    "task.replacement": _MEMBER,
    "task.split_seed": _MEMBER,
    "task.ood_val_fraction": _ADDED_MEMBER,
    "task.burst_pairs": _ADDED,
    "task.burst_steps": _ADDED,
    "task.curriculum_n_id": _ADDED,
    "task.curriculum_steps": _ADDED,
    "model.d_model": _TASK,
    "model.n_layers": _TASK,
    "model.n_heads": _TASK,
    "model.mlp_ratio": _TASK,
    "model.rope_theta": _TASK,
    "model.attention": _TASK,
    "model.init_std": _ADDED,
    "model.role_embedding": _ADDED,
    "train.steps": _TRAIN,
    "train.batch_size": _TRAIN,
    "train.lr": _TRAIN,
    "train.weight_decay": _TRAIN,
    "train.warmup_steps": _TRAIN,
    "train.warmup_start": _TRAIN,
    "train.final_lr_ratio": _TRAIN,
    "train.decay_steps": _ADDED_TRAIN,
    "train.weight_decay_step": _ADDED_TRAIN,
    "train.late_weight_decay": _ADDED_TRAIN,
    "train.grokfast_lambda": _ADDED_TRAIN,
    "train.grokfast_alpha": _ADDED_TRAIN,
    # a branch keeps its optimizer: the saved state belongs to it
    "train.optimizer": _ADDED,
    "train.muon_ns_dtype": _ADDED_TRAIN,
    "train.beta1": _TRAIN,
    "train.beta2": _TRAIN,
    "train.eps": _TRAIN,
    "train.eval_every": _TRAIN,
    "train.eval_sequences": _TRAIN,
    "train.eval_batch_size": _TRAIN,
    "train.dtype": _TRAIN,
    "train.compile": _EXECUTION,
    "train.compile_mode": _ADDED_EXECUTION,
    "train.device": _EXECUTION,
    # one process runs an ensemble with one thread count, whatever its members asked for
    "train.threads": FieldRole(execution=True, member=True),
    "train.keep_checkpoints": _ADDED_EXECUTION,
    "seed": _MEMBER,
    "phase_threshold": _MEMBER,
    "task_seed": _ADDED_MEMBER,
    "init_seed": _ADDED_MEMBER,
    "data_seed": _ADDED_MEMBER,
}


def field_names() -> list[str]:
    """Every field of :class:`RunConfig` by dotted name, in declaration order."""
    names = []
    for f in dataclasses.fields(RunConfig):
        names += [f"{f.name}.{g.name}" for g in dataclasses.fields(PARTS[f.name])] if f.name in PARTS else [f.name]
    return names


def _fields_with(**flags: bool) -> list[str]:
    return [n for n, r in FIELD_ROLES.items() if all(getattr(r, k) == v for k, v in flags.items())]


# TrainConfig fields that change how a run executes but not what it computes (from FIELD_ROLES).
EXECUTION_FIELDS = tuple(n.removeprefix("train.") for n in _fields_with(execution=True))


def differences(a: RunConfig, b: RunConfig) -> dict[str, list[Any]]:
    """Dotted field name → [value in ``a``, value in ``b``] for every field where the two configs differ,
    :data:`EXECUTION_FIELDS` left out (what a resume may change and a branch does not report)."""
    fa, fb = flat_dict(a), flat_dict(b)
    return {k: [fa[k], fb[k]] for k in fa if fa[k] != fb[k] and not FIELD_ROLES[k].execution}


def flat_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as one flat dict: dotted field name (as in :data:`FIELD_ROLES`) → value."""
    out: dict[str, Any] = {}
    for key, value in to_dict(cfg).items():
        out.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    return out


def without_execution(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its :data:`EXECUTION_FIELDS` at their defaults (what a run computes, wherever it runs)."""
    defaults = TrainConfig()
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, **{f: getattr(defaults, f) for f in EXECUTION_FIELDS})
    )
