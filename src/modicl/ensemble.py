"""Several runs of one architecture trained together in one process (for the grids of PAPER.md §3).

Members may differ in everything that only changes their data (n_id, α, task rule, n_ood, split seed,
input sampling, seed); they must share the architecture, p, n_ctx and every training setting
(:func:`ensemble_key`), so one learning-rate schedule and one weight decay hold for all. Each member
keeps its own task set, α split, initialisation, data stream, metrics, checkpoints and run directory,
exactly as if trained alone by :func:`modicl.train.train`.

Two backends:

* ``vmap``: the members' parameters are stacked along a leading dimension (``torch.func``:
  ``stack_module_state``, ``functional_call``, ``vmap``), so one forward/backward and one AdamW step
  serve all members. AdamW is element-wise, so a stacked AdamW is the members' AdamW exactly. This is
  what pays on a GPU, where one small model leaves the device mostly idle.
* ``loop``: one optimizer step per member in turn. On 2 CPU cores a single model of the quick
  architecture is already compute-bound, and a 16-member vmapped step measured 0.79× the member-steps/s
  of one model, against 0.95–0.99× for this loop (BENCHMARKS.md), so ``auto`` picks ``loop`` on CPUs: the ensemble then costs nothing and
  still gives one process, one progress bar and one data pipeline per grid.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .config import ConfigError, RunConfig, validate
from .progress import progress_bar
from .runlock import RunLocked
from .compiling import is_compiler_error
from .runtime import resolve_compile, restores_threads, setup_process
from .train import RunState, TrainStep, build_optimizer, lr_multiplier, weight_decay_at, z_loss

# Fields that only change a member's data; everything else must be equal across an ensemble.
DATA_FIELDS = {"task": ("n_id", "alpha", "rule", "n_ood", "split_seed", "shared_inputs", "replacement", "ood_val_fraction"),
               "top": ("seed", "task_seed", "init_seed", "data_seed", "phase_threshold")}


def ensemble_key(cfg: RunConfig) -> str:
    """A string equal for configs that can train in one ensemble: the config without its data-only
    fields and without the execution-only fields that do not change results (threads)."""
    task = dataclasses.replace(cfg.task, **{f: getattr(RunConfig().task, f) for f in DATA_FIELDS["task"]})
    train = dataclasses.replace(cfg.train, threads=0)
    return repr((task, cfg.model, train))


class VmapStep:
    """One AdamW step of all members at once on stacked parameters.

    ``sync()`` copies the stacked parameters and optimizer state back into each member's own model and
    optimizer (in the format a single run saves), before evaluation and checkpoints. With the members'
    ``train.compile`` resolved on, the vmapped forward and loss are compiled as one graph (RoPE is then
    real-valued, so no custom vmap rule runs); a compiler failure falls back to eager as in
    :class:`modicl.train.TrainStep`. ``compiled`` says which ran."""

    def __init__(self, runs: Sequence[RunState]):
        from torch.func import stack_module_state

        self.runs = list(runs)
        self.autocast = runs[0].autocast
        tc = runs[0].cfg.train
        models = [r.model for r in runs]
        params, self.buffers = stack_module_state(models)
        self.params = params
        self.base = copy.deepcopy(models[0]).to("meta")
        names = list(params)
        self.opt = build_optimizer([params[n] for n in names], tc, runs[0].device, stacked=True)
        self.compiled = resolve_compile(tc.compile, runs[0].device)
        self.compile_error: str | None = None
        self.loss_fn = self._losses
        if self.compiled:
            mode = tc.compile_mode
            self.loss_fn = torch.compile(self._losses) if mode == "default" else torch.compile(self._losses, mode=mode)
        member_params = [dict(m.named_parameters()) for m in models]
        for n in names:  # resume: stack the members' optimizer states
            states = [r.opt.state.get(mp[n]) for r, mp in zip(runs, member_params)]
            if all(states):
                self.opt.state[params[n]] = {
                    "step": states[0]["step"].clone(),
                    "exp_avg": torch.stack([s["exp_avg"] for s in states]),
                    "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]),
                }

    def _member_loss(self, params: dict, buffers: dict, tokens: Tensor) -> Tensor:
        from torch.func import functional_call

        return z_loss(lambda inputs: functional_call(self.base, (params, buffers), (inputs,)), tokens, self.runs[0].cfg.task.n_var)

    def _losses(self, params: dict, buffers: dict, tokens: Tensor) -> Tensor:
        from torch.func import vmap

        with self.autocast:
            return vmap(self._member_loss)(params, buffers, tokens)

    def __call__(self, batches: Sequence[Tensor], lr: float, weight_decay: float | None = None) -> Tensor:
        """One step of every member at learning rate ``lr`` and weight decay ``weight_decay`` of the ≥ 2-D
        parameters (None: as built) on its batch (int64 [batch_size, (n_var + 1)·n_ctx] each); returns the
        members' losses, fp32 [K], detached."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        if weight_decay is not None:
            self.opt.param_groups[0]["weight_decay"] = weight_decay
        self.opt.zero_grad(set_to_none=True)
        tokens = torch.stack(list(batches))
        if self.compiled and self.runs[0].cfg.train.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten
        try:
            losses = self.loss_fn(self.params, self.buffers, tokens)
        except Exception as e:
            if self.loss_fn is self._losses or not is_compiler_error(e):
                raise
            self.compile_error = f"{type(e).__name__}: {str(e)[:300]}"
            warnings.warn(f"torch.compile failed on the vmap ensemble ({self.compile_error}); running it eagerly")
            self.loss_fn, self.compiled = self._losses, False
            self.opt.zero_grad(set_to_none=True)
            losses = self._losses(self.params, self.buffers, tokens)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the stacked parameters, optimizer state and learning rate into each member's own."""
        for i, run in enumerate(self.runs):
            for group, stacked in zip(run.opt.param_groups, self.opt.param_groups):
                group["lr"], group["weight_decay"] = stacked["lr"], stacked["weight_decay"]
            for n, p in run.model.named_parameters():
                p.copy_(self.params[n][i])
                st = self.opt.state.get(self.params[n])
                if st:
                    run.opt.state[p] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][i].clone(),
                                        "exp_avg_sq": st["exp_avg_sq"][i].clone()}


class LoopStep:
    """One optimizer step per member in turn: the single-run step, bit for bit."""

    def __init__(self, runs: Sequence[RunState]):
        compile_on = resolve_compile(runs[0].cfg.train.compile, runs[0].device)
        self.steps = [TrainStep(r.model, r.opt, r.autocast, compile_on, r.cfg.train.compile_mode, r.cfg.task.n_var) for r in runs]

    def __call__(self, batches: Sequence[Tensor], lr: float, weight_decay: float | None = None) -> Tensor:
        """One step per member at learning rate ``lr`` and weight decay ``weight_decay``; the members'
        losses, fp32 [K], detached."""
        for step in self.steps:
            for group in step.opt.param_groups:
                group["lr"] = lr
            if weight_decay is not None:
                step.opt.param_groups[0]["weight_decay"] = weight_decay
        return torch.stack([step(tokens) for step, tokens in zip(self.steps, batches)])

    def sync(self) -> None:
        pass


def saved_device_type(run_dir: Path) -> str | None:
    """The device type (``cpu`` or ``cuda``) whose data stream ``run_dir``'s last checkpoint saved, told by
    its generator state (a CPU Mersenne-Twister state is 5 056 bytes, a CUDA Philox state 16); None
    without a readable checkpoint."""
    from .rundir import load_state

    try:
        n = load_state(run_dir)["generator"].numel()
    except Exception:
        return None
    return "cpu" if n > 16 else "cuda"


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` → ``vmap`` on CUDA, ``loop`` elsewhere (see the module docstring)."""
    if name not in ("auto", "vmap", "loop"):
        raise ConfigError(f"ensemble backend {name!r}; use auto, vmap or loop")
    return ("vmap" if device.type == "cuda" else "loop") if name == "auto" else name


@restores_threads
def train_ensemble(
    cfgs: Sequence[RunConfig],
    run_dirs: Sequence[str | Path],
    *,
    resume: bool = True,
    backend: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> list[str | None]:
    """Train the runs ``cfgs`` (into ``run_dirs``) together as one ensemble.

    Args:
        cfgs: member configs; all must have the same :func:`ensemble_key`.
        run_dirs: one run directory per member (as :func:`modicl.train.train` writes it).
        resume: continue members that have a checkpoint; members resumed at different steps train in
            groups of equal step, one group after another.
        backend: ``auto``, ``vmap`` or ``loop`` (see the module docstring).
        progress: one progress bar over the ensemble's steps.
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
        raise ConfigError("ensemble members differ in more than their data (n_id, α, rule, seed, …); train them in separate ensembles")
    device, dtype = setup_process(cfgs[0].train)
    backend = resolve_backend(backend, device)
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
                outcome[i] = (f"ConfigError: {d} was trained on {saved} and this ensemble runs on {device.type}; "
                              f"resume it on a {saved} device ({type(e).__name__}: {str(e)[:120]})")
            else:
                outcome[i] = f"{type(e).__name__}: {e}"
    try:
        for start in sorted({r.start for r in runs.values()}):
            group = {i: r for i, r in runs.items() if r.start == start}
            for i, err in _train_group(group, backend, progress, stop_after).items():
                outcome[i] = err
    finally:  # release every member's run directory, however training ended
        for r in runs.values():
            r.close()
    return outcome


def _train_group(runs: dict[int, RunState], backend: str, progress: bool, stop_after: int | None) -> dict[int, str | None]:
    first = next(iter(runs.values()))
    tc, start, device = first.cfg.train, first.start, first.device
    errors: dict[int, str | None] = {}
    active = dict(runs)
    stepper = (VmapStep if backend == "vmap" else LoopStep)(list(active.values()))
    for r in active.values():
        if r.start == 0 and not r.resumed:
            r.evaluate(0, None)
    bar = progress_bar(total=tc.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"ensemble of {len(active)}")
    # Per-member bookkeeping as tensors of length K (one kernel each per step, no host sync): the
    # running loss sums and the first non-finite step (−1 while finite).
    loss_sum = torch.zeros(len(active), device=device)
    bad = torch.full((len(active),), -1, dtype=torch.int64, device=device)
    n_since, last_good = 0, start
    for step in range(start, tc.steps):
        t_step = time.perf_counter()
        lr = tc.lr * lr_multiplier(step, tc)  # one schedule for all: ensemble_key makes train configs equal
        # each member draws from its own generator, so its stream is the one it would see alone
        losses = stepper([r.batch(step) for r in active.values()], lr, weight_decay_at(step, tc))
        bad = torch.where((bad < 0) & ~torch.isfinite(losses), step + 1, bad)
        loss_sum += losses
        n_since += 1
        done = step + 1
        bar.update(1)
        share = (time.perf_counter() - t_step) / len(active)
        for r in active.values():
            r.train_s += share
        is_eval = done % tc.eval_every == 0 or done == tc.steps
        if done % 25 == 0 or is_eval:
            bad_steps = bad.tolist()
            diverged = [i for i, b in zip(active, bad_steps) if b >= 0]
            for i, b in zip(list(active), bad_steps):
                if b >= 0:
                    errors[i] = (f"TrainingDiverged: loss became non-finite at step {b}; checkpoints/last in "
                                 f"{active[i].run_dir} keeps step {last_good}")
            if diverged:
                keep = torch.tensor([b < 0 for b in bad_steps], device=device)
                loss_sum, bad = loss_sum[keep], bad[keep]
                for i in diverged:
                    del active[i]
                if not active:
                    break
                stepper.sync()
                stepper = (VmapStep if backend == "vmap" else LoopStep)(list(active.values()))
        if is_eval:
            stepper.sync()
            for r, mean_loss in zip(active.values(), (loss_sum / n_since).tolist()):
                r.evaluate(done, mean_loss)
            loss_sum.zero_()
            n_since, last_good = 0, done
            if stop_after is not None and done >= stop_after and done < tc.steps:
                bar.close()
                return errors
    bar.close()
    for i, r in active.items():
        r.finish()
        errors[i] = None
    return errors
