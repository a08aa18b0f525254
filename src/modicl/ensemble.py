"""Several runs of one architecture trained together in one process (for the grids of PAPER.md §3).

Members may differ in everything that only changes their data (n_id, α, task rule, n_ood, split seed,
input sampling, seed); they must share the architecture, p, n_ctx and every training setting
(:func:`ensemble_key`), so one learning-rate schedule and one weight decay hold for all. Each member
keeps its own task set, α split, initialisation, data stream, metrics, checkpoints and run directory,
exactly as if trained alone by :func:`modicl.training.train`: the members go through the same training loop
(:func:`modicl.training.train_runs`) as a single run.

Two step backends (:mod:`modicl.steps`): ``vmap`` stacks the members' parameters so one
forward/backward and one AdamW step serve all members, which pays on a GPU; ``loop`` steps each member
in turn. On 2 CPU cores a single model of the quick architecture is already compute-bound, and a
16-member vmapped step measured 0.79× the member-steps/s of one model, against 0.95–0.99× for the loop
(BENCHMARKS.md), so ``auto`` picks ``loop`` on CPUs: the ensemble then costs nothing and still gives one
process, one progress bar and one data pipeline per grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError, RunConfig, validate
from .fields import FIELD_ROLES, flat_dict
from .runlock import RunLocked
from .runtime import restores_threads, setup_process
from .steps import resolve_backend
from .training import RunState, TrainingDiverged, train_runs


def ensemble_key(cfg: RunConfig) -> str:
    """A string equal for configs that can train in one ensemble: the config without the fields its
    members may differ in (:data:`modicl.fields.FIELD_ROLES`, ``member``: the data-only fields, the seeds,
    and threads, which one process sets for all)."""
    return repr(sorted((k, v) for k, v in flat_dict(cfg).items() if not FIELD_ROLES[k].member))


def saved_device_type(run_dir: Path) -> str | None:
    """The device type (``cpu`` or ``cuda``) whose data stream ``run_dir``'s last checkpoint saved
    (:func:`modicl.rundir.stream_device`); None without a readable checkpoint."""
    from .rundir import load_state, stream_device

    try:
        return stream_device(load_state(run_dir))
    except Exception:
        return None


@restores_threads
def train_ensemble(
    cfgs: Sequence[RunConfig],
    run_dirs: Sequence[str | Path],
    *,
    resume: bool = True,
    backend: str = "auto",
    progress: bool | str = True,
    stop_after: int | None = None,
) -> list[str | None]:
    """Train the runs ``cfgs`` (into ``run_dirs``) together as one ensemble.

    Args:
        cfgs: member configs; all must have the same :func:`ensemble_key`.
        run_dirs: one run directory per member (as :func:`modicl.training.train` writes it).
        resume: continue members that have a checkpoint; members resumed at different steps train in
            groups of equal step, one group after another.
        backend: ``auto``, ``vmap`` or ``loop`` (see the module docstring).
        progress: one progress bar over the ensemble's steps (a string: plain lines named by it).
        stop_after: stop every member once this step is checkpointed (as if interrupted); for tests.

    Returns:
        Per member, None when it finished (summary.json written) or a one-line error (a member whose
        loss becomes NaN stops with TrainingDiverged; the others go on).

    Raises:
        ConfigError: members that cannot share an ensemble, or a config that cannot work.
    """
    cfgs = [validate(c) for c in cfgs]
    if len(cfgs) != len(run_dirs) or not cfgs:
        raise ConfigError("train_ensemble needs one run directory per config, and at least one config")
    keys = {ensemble_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ConfigError(
            "ensemble members differ in more than their data (n_id, α, rule, seed, …); train them in separate ensembles"
        )
    device, dtype = setup_process(cfgs[0].train)
    backend = resolve_backend(backend, device, cfgs[0].train.optimizer)
    outcome: list[str | None] = [None] * len(cfgs)
    runs: dict[int, RunState] = {}
    for i, (cfg, d) in enumerate(zip(cfgs, run_dirs)):
        try:
            runs[i] = RunState(cfg, d, resume=resume, device=device, dtype=dtype)
        except RunLocked as e:
            outcome[i] = f"RunLocked: {e}"
        except ConfigError as e:
            outcome[i] = f"ConfigError: {e}"
        except Exception as e:  # a member that cannot be opened fails alone, not the whole ensemble
            saved = saved_device_type(Path(d))
            if saved is not None and saved != device.type:
                outcome[i] = (
                    f"ConfigError: {d} was trained on {saved} and this ensemble runs on {device.type}; "
                    f"resume it on a {saved} device ({type(e).__name__}: {str(e)[:120]})"
                )
            else:
                outcome[i] = f"{type(e).__name__}: {e}"
    try:
        for start in sorted({r.start for r in runs.values()}):
            group = {i: r for i, r in runs.items() if r.start == start}
            results = train_runs(
                list(group.values()),
                backend,
                progress=progress,
                stop_after=stop_after,
                desc=f"ensemble of {len(group)}",
            )
            for i, res in zip(group, results):
                outcome[i] = f"TrainingDiverged: {res}" if isinstance(res, TrainingDiverged) else None
    finally:  # release every member's run directory, however training ended
        for r in runs.values():
            r.close()
    return outcome
