"""One optimizer step of N runs (PAPER.md §2.3): the schedule, AdamW, the loss, and two step backends.

AdamW with β = (0.9, 0.98) and decoupled weight decay on parameters with ≥ 2 dims only (LayerNorm gains
and biases are not pulled to zero: decaying them would shrink the normalised scale, not a weight). The
learning-rate multiplier rises linearly from ``warmup_start`` to 1 over the warmup, then follows a
cosine to ``final_lr_ratio`` (over the last ``decay_steps`` steps only, if set). The loss is the mean
cross-entropy on the z tokens.

The training loop (:func:`modicl.training.train_runs`) steps N runs of one architecture with one of two
backends, which take the runs' batches, the learning rate and the weight decay and return the N losses:

* :class:`LoopStep`: one :class:`TrainStep` per run in turn, bit for bit a run trained alone (N = 1 is
  a single run). On 2 CPU cores a single model of the quick architecture is already compute-bound, so
  this is what CPUs use.
* :class:`VmapStep`: the runs' parameters stacked along a leading dimension (``torch.func``:
  ``stack_module_state``, ``functional_call``, ``vmap``), so one forward/backward and one AdamW step
  serve all runs. AdamW is element-wise, so a stacked AdamW is the runs' AdamW exactly; Muon orthogonalizes
  each member's matrices on its own (batched matmuls, equal to the runs' within rounding). This is what pays
  on a GPU, where one small model leaves the device mostly idle.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from .compiling import graph_break_count, is_compiler_error, relative_difference
from .config import ConfigError, RunConfig, TrainConfig
from .data import model_inputs, z_targets
from .family import query_slice
from .model import Transformer
from .muon import Muon, resolve_ns_dtype
from .runtime import resolve_compile


@runtime_checkable  # so that the test suite's type checks (beartype) can check an argument typed StepRun
class StepRun(Protocol):
    """What a step backend reads of a run (:class:`modicl.training.RunState` has it): its config, model,
    optimizer, device and autocast context. A protocol, so this module does not import the training loop."""

    @property
    def cfg(self) -> RunConfig: ...
    @property
    def model(self) -> Transformer: ...
    @property
    def opt(self) -> torch.optim.Optimizer | MuonAdamW: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def autocast(self) -> contextlib.AbstractContextManager: ...


def set_schedule(opt: torch.optim.Optimizer | MuonAdamW, lr: float, weight_decay: float | None = None) -> None:
    """Set ``lr`` on every parameter group of ``opt`` (built by :func:`build_optimizer`) and, unless None,
    ``weight_decay`` on its decayed groups (AdamW's first, and Muon's)."""
    for group in opt.param_groups:
        group["lr"] = lr
    if weight_decay is not None:
        for group in getattr(opt, "decayed_groups", opt.param_groups[:1]):
            group["weight_decay"] = weight_decay


def weight_decay_at(step: int, cfg: TrainConfig) -> float:
    """Weight decay of the ≥ 2-D parameters at 0-based optimizer step ``step``: ``weight_decay``, then
    ``late_weight_decay`` from ``weight_decay_step`` on when that is set (a deviation from the paper)."""
    return cfg.late_weight_decay if cfg.weight_decay_step and step >= cfg.weight_decay_step else cfg.weight_decay


def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based), PAPER.md §2.3.

    Linear from ``warmup_start`` (step 0) to 1 (step warmup_steps), then cosine from 1 to
    ``final_lr_ratio`` at step ``steps``. With ``decay_steps`` N > 0 the multiplier stays 1 until
    step ``steps - N`` and the cosine runs over the last N steps (warmup-stable-decay).
    """
    if step < cfg.warmup_steps:
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * step / cfg.warmup_steps
    # with decay_steps 0 this is the paper's schedule, to the bit (runs made before the option replay)
    start = max(cfg.warmup_steps, cfg.steps - cfg.decay_steps) if cfg.decay_steps else cfg.warmup_steps
    if step < start:
        return 1.0
    progress = min(1.0, (step - start) / max(1, cfg.steps - start))
    return cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class MuonAdamW:
    """Muon (Jordan et al. 2024) on the blocks' weight matrices and AdamW on the rest, stepped together:
    the optimizer of ``train.optimizer = "muon"``, a deviation from the paper.

    Muon (:class:`modicl.muon.Muon`) runs with Moonshot's learning-rate adjustment (``match_rms_adamw``: its
    update's RMS matches AdamW's, so the AdamW lr and weight decay carry over; Liu et al. 2025, arXiv
    2502.16982), on single matrices or on an ensemble's stacked ones (:class:`VmapStep`). ``param_groups``
    lists AdamW's groups then Muon's; ``decayed_groups`` the ones whose weight decay follows the schedule;
    ``state`` reads and writes both optimizers' states.
    """

    def __init__(self, adamw: torch.optim.AdamW, muon: torch.optim.Optimizer):
        self.adamw, self.muon = adamw, muon
        self.muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}

    # properties, not lists: load_state_dict gives each optimizer new group dicts
    @property
    def param_groups(self) -> list[dict]:
        return self.adamw.param_groups + self.muon.param_groups

    @property
    def decayed_groups(self) -> list[dict]:
        return self.adamw.param_groups[:1] + self.muon.param_groups

    @property
    def state(self) -> _JointState:
        return _JointState(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; raises ConfigError for the state of a plain AdamW run."""
        if set(state) != {"adamw", "muon"}:
            raise ConfigError("the checkpoint holds a plain AdamW state; resume it with train.optimizer adamw")
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


class _JointState(MutableMapping):
    """The states of a :class:`MuonAdamW` as one mapping: each parameter's entry lives in (and is written
    to) the optimizer that steps it, so a checkpoint never finds a parameter in the other's state."""

    def __init__(self, opt: MuonAdamW):
        self.opt = opt

    def _owner(self, p: Tensor) -> dict:
        return self.opt.muon.state if id(p) in self.opt.muon_ids else self.opt.adamw.state

    def __getitem__(self, p: Tensor) -> dict:
        return self._owner(p)[p]

    def __setitem__(self, p: Tensor, value: dict) -> None:
        self._owner(p)[p] = value

    def __delitem__(self, p: Tensor) -> None:
        del self._owner(p)[p]

    def __contains__(self, p: object) -> bool:
        return isinstance(p, Tensor) and p in self._owner(p)

    def __iter__(self):
        yield from self.opt.adamw.state
        yield from self.opt.muon.state

    def __len__(self) -> int:
        return len(self.opt.adamw.state) + len(self.opt.muon.state)


def build_optimizer(
    model: torch.nn.Module | Mapping[str, Tensor], cfg: TrainConfig, device: torch.device, *, stacked: bool = False
) -> torch.optim.AdamW | MuonAdamW:
    """AdamW with weight decay on ≥2-D parameters only; fused kernels on CUDA. With ``cfg.optimizer``
    ``muon``, a :class:`MuonAdamW` whose Muon takes the weight matrices of the blocks (attention and MLP)
    and whose AdamW takes the embeddings (decayed) and the LayerNorm parameters.

    ``model`` is a module or its named parameters {name: tensor} in order; with ``stacked`` every
    parameter carries a leading member dimension (an ensemble's stacked parameters, :class:`VmapStep`)
    that does not count towards its dimensions, and Muon orthogonalizes each member's matrix on its own. Muon's
    Newton–Schulz precision is ``cfg.muon_ns_dtype``
    (:func:`modicl.muon.resolve_ns_dtype`).
    """
    muon: list[Tensor] = []
    lead = 1 if stacked else 0
    named = dict(model.named_parameters()) if isinstance(model, torch.nn.Module) else dict(model)
    if cfg.optimizer == "muon":
        muon = [p for n, p in named.items() if n.startswith("blocks.") and p.dim() - lead == 2]
    params = list(named.values())
    rest = [p for p in params if all(p is not q for q in muon)]
    decay = [p for p in rest if p.dim() - lead >= 2]
    no_decay = [p for p in rest if p.dim() - lead < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=device.type == "cuda")
    if not muon:
        return adamw
    return MuonAdamW(
        adamw,
        Muon(muon, lr=cfg.lr, weight_decay=cfg.weight_decay, ns_dtype=resolve_ns_dtype(cfg.muon_ns_dtype, device)),
    )


GROKFAST_KEY = "grokfast_ema"  # where the filter keeps its EMA: in the optimizer state, so checkpoints carry it


@torch.no_grad()
def grokfast_filter(opt: torch.optim.Optimizer | MuonAdamW, lamb: float, alpha: float) -> dict[Tensor, Tensor]:
    """Grokfast-EMA (Lee et al. 2024, arXiv 2405.20233, Algorithm 2): for every parameter of ``opt`` with a
    gradient g, ema ← α·ema + (1 − α)·g (ema starts at the first g), then g ← g + λ·ema, in place.

    The EMA lives in ``opt.state[p]`` under :data:`GROKFAST_KEY`, so it is saved and restored with the
    optimizer. It is written back by :func:`keep_grokfast` after ``opt.step()``: AdamW builds its own
    state only for a parameter whose state is still empty. Returns {parameter: its new EMA}; works on
    stacked ensemble parameters alike (the filter is element-wise).
    """
    emas = {}
    state = opt.state  # once: MuonAdamW builds this view on each access
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            ema = state[p].get(GROKFAST_KEY) if p in state else None
            ema = p.grad.detach().clone() if ema is None else ema.mul_(alpha).add_(p.grad, alpha=1.0 - alpha)
            p.grad.add_(ema, alpha=lamb)
            emas[p] = ema
    return emas


def keep_grokfast(opt: torch.optim.Optimizer | MuonAdamW, emas: dict[Tensor, Tensor]) -> None:
    """Store the EMAs of :func:`grokfast_filter` in the optimizer state (after ``opt.step()``)."""
    state = opt.state
    for p, ema in emas.items():
        state[p][GROKFAST_KEY] = ema


def filtered_step(opt: torch.optim.Optimizer | MuonAdamW, lamb: float, alpha: float) -> None:
    """``opt.step()`` on the gradients in place, through :func:`grokfast_filter` (λ ``lamb``, α ``alpha``)
    when ``lamb`` > 0: what every step backend runs after backward."""
    emas = grokfast_filter(opt, lamb, alpha) if lamb else {}
    opt.step()
    keep_grokfast(opt, emas)


def z_loss(model: Callable[..., Tensor], tokens: Int[Tensor, "batch seq"], *, n_var: int) -> Float[Tensor, ""]:
    """Mean cross-entropy over the z tokens of a batch, int64 tokens [B, (n_var + 1)·n_ctx] → scalar fp32
    (the loss mask of PAPER.md §1.3: no input token is supervised). ``model`` maps the model's inputs
    [B, (n_var + 1)·n_ctx − 1] and ``positions=query_slice(n_var)`` to the logits at those positions
    [B, n_ctx, p] (:meth:`modicl.model.Transformer.forward`, which then runs the last block's MLP and the
    unembedding on the query positions only): a module, or a functional call on an ensemble member's
    parameters."""
    logits = model(model_inputs(tokens), positions=query_slice(n_var))
    return F.cross_entropy(logits.float().flatten(0, 1), z_targets(tokens, n_var=n_var).flatten())


COMPILE_TOLERANCE = {"fp32": 1e-3, "autocast": 5e-2}
"""Largest relative difference (:func:`modicl.compiling.relative_difference`) of a compiled step's first
loss, and of its gradients taken together, from the eager ones that still counts as the same computation:
fp32 compiled and eager agree to ≈ 1e-6 (fusion reorders sums), bf16 autocast to ≈ 1e-2 (Inductor keeps
some fused intermediates in fp32); the miscompiled kernels seen were off by orders of magnitude or not
finite."""


def compile_tolerance(autocast: contextlib.AbstractContextManager) -> float:
    """The :data:`COMPILE_TOLERANCE` of a step run under ``autocast`` (a no-op context: fp32). An engineering
    check, no paper section."""
    return COMPILE_TOLERANCE["fp32" if isinstance(autocast, contextlib.nullcontext) else "autocast"]


def checked_against_eager(
    params: Sequence[Tensor], compiled: Callable[[], Tensor], eager: Callable[[], Tensor], tol: float
) -> tuple[Tensor, str | None]:
    """One forward/backward compiled and one eager on the same weights and batch, compared.

    ``compiled`` and ``eager`` each zero the gradients of ``params``, run forward and backward and return the
    detached loss(es). Returns (loss, None) with the compiled gradients left in ``.grad`` when the losses and
    the gradients (all together) agree within ``tol`` (:func:`modicl.compiling.relative_difference`), else
    (the eager loss, a one-line description of the difference) with the eager gradients left in ``.grad``.
    ``params``: any shapes; losses: fp32 scalars or [members]. An engineering check, no paper section."""
    loss = compiled()
    grads = [p.grad for p in params]
    eager_loss = eager()
    diff = max(relative_difference([eager_loss], [loss]), relative_difference([p.grad for p in params], grads))
    if diff > tol:
        return eager_loss, (
            f"the compiled step's loss or gradients differ from eager by {diff:.3g} (relative; tolerance {tol:g}) "
            "on the first batch"
        )
    for p, g in zip(params, grads, strict=True):
        p.grad = g  # the compiled ones: a compiled run follows the compiled numerics from its first step
    return loss, None


class TrainStep:
    """One optimizer step (forward under autocast, backward, AdamW).

    With ``compile`` the model is wrapped by ``torch.compile(mode=compile_mode)``. If the compiler fails
    (:func:`is_compiler_error`; on any call, not only the first) the step warns, records the error in
    ``compile_error`` and runs eagerly from then on; every other exception propagates. The first compiled
    call also runs the batch eagerly and compares the loss and every gradient
    (:func:`modicl.compiling.relative_difference`); beyond :data:`COMPILE_TOLERANCE` (fp32, or under an
    autocast context) it treats the compiler as failed the same way and steps with the eager gradients, so
    a compiler that computes wrong numbers without raising cannot train a run. ``compiled`` says
    what runs now, ``graph_breaks`` how many graph breaks Dynamo reported while compiling (None before
    the first compiled call or without compile). ``n_var`` is the task family's inputs per example,
    which places the loss on the z tokens (:func:`z_loss`). ``grokfast`` is (λ, α) of
    :func:`grokfast_filter`, applied between backward and the optimizer step when λ > 0.
    """

    def __init__(
        self,
        model: Transformer,
        opt: torch.optim.Optimizer | MuonAdamW,
        autocast,
        compile: bool,
        compile_mode: str = "default",
        *,
        n_var: int,
        grokfast: tuple[float, float] = (0.0, 0.98),
    ):
        self.model, self.opt, self.autocast, self.n_var = model, opt, autocast, n_var
        self.grokfast = grokfast
        self.compile_mode = compile_mode
        self.compiled = compile
        self.forward_model: Callable[..., Tensor] = model
        if compile:  # mode only when it is not the default, so any backend can be swapped in
            self.forward_model = (
                torch.compile(model) if compile_mode == "default" else torch.compile(model, mode=compile_mode)
            )
        self.graph_breaks: int | None = None
        self.compile_error: str | None = None

    def _run(self, fwd, tokens: Tensor) -> Tensor:
        loss = self._gradients(fwd, tokens)
        filtered_step(self.opt, *self.grokfast)
        return loss

    def _gradients(self, fwd, tokens: Tensor) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss = z_loss(fwd, tokens, n_var=self.n_var)
        loss.backward()
        return loss.detach()

    def _first_compiled(self, tokens: Tensor) -> Tensor:
        """The first compiled step, checked against eager on the same batch and weights."""
        loss, error = checked_against_eager(
            list(self.model.parameters()),
            lambda: self._gradients(self.forward_model, tokens),
            lambda: self._gradients(self.model, tokens),
            compile_tolerance(self.autocast),
        )
        if error is not None:
            self.compiled, self.forward_model, self.compile_error = False, self.model, error
            warnings.warn(
                f"torch.compile computes wrong numbers here ({error}); training eagerly instead", stacklevel=3
            )
        filtered_step(self.opt, *self.grokfast)
        return loss

    def __call__(self, tokens: Int[Tensor, "batch seq"]) -> Float[Tensor, ""]:
        if not self.compiled:
            return self._run(self.model, tokens)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten
        first = self.graph_breaks is None
        breaks_before = graph_break_count() if first else None
        try:
            loss = self._first_compiled(tokens) if first else self._run(self.forward_model, tokens)
        except Exception as e:
            if not is_compiler_error(e):
                raise
            self.compiled, self.forward_model = False, self.model
            self.compile_error = f"{type(e).__name__}: {str(e)[:300]}"
            warnings.warn(f"torch.compile failed ({self.compile_error}); training eagerly instead", stacklevel=2)
            return self._run(self.model, tokens)
        if breaks_before is not None and self.compiled:
            self.graph_breaks = graph_break_count() - breaks_before
        return loss


class VmapStep:
    """One optimizer step (AdamW, or Muon with AdamW) of all members at once on stacked parameters.

    ``sync()`` copies the stacked parameters and optimizer state back into each member's own model and
    optimizer (in the format a single run saves), before evaluation and checkpoints. With the members'
    ``train.compile`` resolved on, the vmapped forward and loss are compiled as one graph (RoPE is then
    real-valued, so no custom vmap rule runs); a compiler failure, or a first compiled step whose losses or
    gradients differ from eager, falls back to eager as in :class:`TrainStep`. ``compiled`` says which ran."""

    def __init__(self, runs: Sequence[StepRun]):
        from torch.func import stack_module_state

        self.runs = list(runs)
        self.autocast = runs[0].autocast
        tc = runs[0].cfg.train
        models = [r.model for r in runs]
        params, self.buffers = stack_module_state(models)
        self.params = params
        self.base = copy.deepcopy(models[0]).to("meta")
        names = list(params)
        self.opt = build_optimizer(params, tc, runs[0].device, stacked=True)
        self.compiled = resolve_compile(tc.compile, runs[0].device)
        self.compile_error: str | None = None
        self.checked = False  # whether the first compiled step was compared with eager (checked_against_eager)
        self.loss_fn = self._losses
        if self.compiled:
            mode = tc.compile_mode
            self.loss_fn = torch.compile(self._losses) if mode == "default" else torch.compile(self._losses, mode=mode)
        member_params = [dict(m.named_parameters()) for m in models]
        for n in names:  # resume: stack the members' optimizer states
            states = [r.opt.state[mp[n]] for r, mp in zip(runs, member_params) if mp[n] in r.opt.state]
            # AdamW's moments, Muon's momentum, the Grokfast EMA: one per member; the step count shared
            if len(states) == len(runs) and all(states):
                self.opt.state[params[n]] = {
                    k: v.clone() if k == "step" else torch.stack([s[k] for s in states])
                    for k, v in states[0].items()
                    if all(k in s for s in states)
                }

    def _member_loss(self, params: dict, buffers: dict, tokens: Tensor) -> Tensor:
        from torch.func import functional_call

        return z_loss(
            lambda inputs, **kw: functional_call(self.base, (params, buffers), (inputs,), kw),
            tokens,
            n_var=self.runs[0].cfg.task.n_var,
        )

    def _losses(self, params: dict, buffers: dict, tokens: Tensor) -> Tensor:
        from torch.func import vmap

        with self.autocast:
            return vmap(self._member_loss)(params, buffers, tokens)

    def __call__(
        self, batches: Sequence[Int[Tensor, "batch seq"]], lr: float, weight_decay: float | None = None
    ) -> Float[Tensor, " members"]:
        """One step of every member at learning rate ``lr`` and weight decay ``weight_decay`` of the ≥ 2-D
        parameters (None: as built) on its batch (int64 [batch_size, (n_var + 1)·n_ctx] each); returns the
        members' losses, fp32 [K], detached."""
        set_schedule(self.opt, lr, weight_decay)
        self.opt.zero_grad(set_to_none=True)
        tokens = torch.stack(list(batches))
        if self.compiled and self.runs[0].cfg.train.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten

        def run(loss_fn) -> Tensor:
            self.opt.zero_grad(set_to_none=True)
            losses = loss_fn(self.params, self.buffers, tokens)
            losses.sum().backward()
            return losses.detach()

        first = self.compiled and not self.checked
        try:
            if first:
                losses, error = checked_against_eager(
                    list(self.params.values()),
                    lambda: run(self.loss_fn),
                    lambda: run(self._losses),
                    compile_tolerance(self.autocast),
                )
                self.checked = True
                if error is not None:
                    self.loss_fn, self.compiled, self.compile_error = self._losses, False, error
                    warnings.warn(
                        f"torch.compile computes wrong numbers on the vmap ensemble ({error}); running it eagerly",
                        stacklevel=2,
                    )
            else:
                losses = run(self.loss_fn)
        except Exception as e:
            if self.loss_fn is self._losses or not is_compiler_error(e):
                raise
            self.compile_error = f"{type(e).__name__}: {str(e)[:300]}"
            warnings.warn(
                f"torch.compile failed on the vmap ensemble ({self.compile_error}); running it eagerly", stacklevel=2
            )
            self.loss_fn, self.compiled = self._losses, False
            losses = run(self._losses)
        tc = self.runs[0].cfg.train
        filtered_step(self.opt, tc.grokfast_lambda, tc.grokfast_alpha)
        return losses.detach()

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the stacked parameters, optimizer state, learning rate and weight decay into each member's own."""
        for i, run in enumerate(self.runs):
            for group, stacked in zip(run.opt.param_groups, self.opt.param_groups):
                group["lr"], group["weight_decay"] = stacked["lr"], stacked["weight_decay"]
            for n, p in run.model.named_parameters():
                p.copy_(self.params[n][i])
                st = self.opt.state[self.params[n]] if self.params[n] in self.opt.state else None
                if st:
                    run.opt.state[p] = {k: v.clone() if k == "step" else v[i].clone() for k, v in st.items()}


class LoopStep:
    """One optimizer step per member in turn: the single-run step, bit for bit."""

    def __init__(self, runs: Sequence[StepRun]):
        compile_on = resolve_compile(runs[0].cfg.train.compile, runs[0].device)
        self.steps = [
            TrainStep(
                r.model,
                r.opt,
                r.autocast,
                compile_on,
                r.cfg.train.compile_mode,
                n_var=r.cfg.task.n_var,
                grokfast=(r.cfg.train.grokfast_lambda, r.cfg.train.grokfast_alpha),
            )
            for r in runs
        ]

    def __call__(
        self, batches: Sequence[Int[Tensor, "batch seq"]], lr: float, weight_decay: float | None = None
    ) -> Float[Tensor, " members"]:
        """One step per member at learning rate ``lr`` and weight decay ``weight_decay``; the members'
        losses, fp32 [K], detached."""
        for step in self.steps:
            set_schedule(step.opt, lr, weight_decay)
        return torch.stack([step(tokens) for step, tokens in zip(self.steps, batches)])

    @property
    def compiled(self) -> bool:
        """Whether the members' steps run compiled now (a compiler failure turns a step eager)."""
        return any(step.compiled for step in self.steps)

    def sync(self) -> None:
        """Nothing to copy: each member steps its own model and optimizer."""


def resolve_backend(name: str, device: torch.device, optimizer: str = "adamw") -> str:
    """``auto`` → ``vmap`` on CUDA, ``loop`` elsewhere (see the module docstring), for AdamW and Muon
    alike (``optimizer`` is kept for callers); raises ConfigError for another name."""
    if name not in ("auto", "vmap", "loop"):
        raise ConfigError(f"ensemble backend {name!r}; use auto, vmap or loop")
    if name == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    return name


def make_step(backend: str, runs: Sequence[StepRun]) -> LoopStep | VmapStep:
    """The step of ``runs`` for a resolved ``backend`` (``loop`` or ``vmap``).

    The runs must share one :func:`modicl.ensemble.ensemble_key` (so one learning rate, weight decay and
    Grokfast setting serve them all) and stand at the same start step. Neither is checked here:
    :func:`modicl.ensemble.train_ensemble` refuses other members and groups resumed ones by their step."""
    return (VmapStep if backend == "vmap" else LoopStep)(runs)
