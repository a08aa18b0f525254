"""The name of a config: a stable hash of everything a run computes, which names its run directory.

Fields added after run directories were first named are left out of the hash while they hold their
default, so a run directory made before a field existed keeps its name (and its sweep finds it done).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .config import RunConfig, to_dict


# (part, field) -> default, for fields added after run directories were first named by config_hash
# (part None: a top-level field). The o.o.d. validation split changes only what is evaluated, never
# the training trajectory, so a run keeps its name with it.
_ADDED_FIELDS: dict[tuple[str | None, str], Any] = {
    ("train", "decay_steps"): 0,
    ("train", "weight_decay_step"): 0,
    ("train", "late_weight_decay"): 0.0,
    ("train", "grokfast_lambda"): 0.0,
    ("train", "grokfast_alpha"): 0.98,
    ("train", "optimizer"): "adamw",
    ("train", "muon_ns_dtype"): "auto",
    ("train", "compile_mode"): "default",
    ("train", "keep_checkpoints"): "none",
    ("task", "ood_val_fraction"): 0.5,
    (None, "task_seed"): None,
    (None, "init_seed"): None,
    (None, "data_seed"): None,
    ("model", "role_embedding"): False,
    ("model", "init_std"): 0.02,
    ("task", "burst_pairs"): 0,
    ("task", "burst_steps"): 0,
    ("task", "curriculum_n_id"): 0,
    ("task", "curriculum_steps"): 0,
    ("task", "n_var"): 2,
}


def config_hash(cfg: RunConfig) -> str:
    """A stable 12-hex-digit hash of the resolved config (run directories are named by it).

    Fields added after the first release are left out while they hold their default, so a run
    directory made before a field existed keeps its name (and its sweep finds it done).
    """
    d = to_dict(cfg)
    for (part, name), default in _ADDED_FIELDS.items():
        where = d if part is None else d[part]
        if where[name] == default:
            del where[name]
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
