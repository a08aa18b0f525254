"""The name of a config: a stable hash of everything a run computes, which names its run directory.

Fields added after run directories were first named are left out of the hash while they hold their
default, so a run directory made before a field existed keeps its name (and its sweep finds it done).
"""

from __future__ import annotations

import hashlib
import json

from .config import RunConfig, to_dict
from .fields import FIELD_ROLES


def config_hash(cfg: RunConfig) -> str:
    """A stable 12-hex-digit hash of the resolved config (run directories are named by it).

    Fields added after the first release are left out while they hold their default, so a run
    directory made before a field existed keeps its name (and its sweep finds it done).
    """
    d, defaults = to_dict(cfg), to_dict(RunConfig())
    for name in (n for n, role in FIELD_ROLES.items() if role.added):
        part, _, key = name.rpartition(".")
        where, default = (d[part], defaults[part]) if part else (d, defaults)
        if where[key] == default[key]:
            del where[key]
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
