"""Typed, validated run configurations and the named presets.

A run is fully described by a frozen :class:`RunConfig` made of three parts: :class:`TaskConfig` (the
task family of He et al. 2024, PAPER.md §1: modulus, inputs per example, pre-training task rule, n_id,
α split, sequence format; the family itself is :mod:`modicl.family`), :class:`ModelConfig` (the GPT-style decoder,
PAPER.md §2.1) and :class:`TrainConfig` (AdamW and the warmup + cosine schedule, PAPER.md §2.3; evaluation cadence;
numerics). :func:`validate` turns every configuration that cannot work into a :class:`ConfigError` whose one-line
message says what to change, before any tensor is built. The named presets are in :mod:`modicl.presets`, the hash
that names run directories in :mod:`modicl.hashing`. This module imports no torch code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from . import family
from .history import ScheduleError, parse_schedule


class ConfigError(ValueError):
    """A configuration that cannot work; the message is one line saying what to change."""


@dataclass(frozen=True)
class TaskConfig:
    """The in-context modular-arithmetic task family (PAPER.md §1).

    Attributes:
        p: prime modulus; tokens are the p residues 0…p-1.
        n_var: inputs per example: tasks w and inputs x live in Z_p^n_var, z = w·x mod p, and an example
            is n_var + 1 tokens (PAPER.md §1.1: 2, z = a·x + b·y; the official code's ``n_var`` option).
            The values modicl runs are :data:`modicl.family.N_VARS`.
        rule: pre-training task rule, ``rectangular`` (PAPER.md §1.4, every main result; n_var = 2 only)
            or ``random``.
        n_id: number of pre-training (i.d.) task vectors, all of them (4 per rectangle).
        n_ood: cap on the number of test o.o.d. task vectors (from the complement, shuffled).
        ood_val_fraction: share of the held-out task vectors kept apart as validation o.o.d. tasks,
            which select the early-stopping checkpoint; the rest (up to n_ood) are the test tasks.
        alpha: fraction of the p**n_var inputs (the p² pairs (x, y)) used for pre-training (PAPER.md §1.5).
        n_ctx: examples (x, y, z) per sequence; the model sees (n_var + 1)·n_ctx − 1 tokens.
        shared_inputs: every task's j-th sequence in a batch uses the same (x, y) stream, as the
            official code does (PAPER.md §1.8); False draws inputs independently per sequence.
        replacement: draw a training sequence's pairs with replacement (the official near-replacement
            sampler); False draws them without replacement where the pool allows it (each pair once
            before any repeats), so no training query can be answered by copying. Evaluation always
            draws with replacement: the measurement stays the same whatever the training sampler, and a
            test pool smaller than n_ctx (10 pairs at p = 7, α 0.8) drawn without replacement would
            leave no novel query at the last position, where the phase is read.
        split_seed: seed of the α split of input pairs (the official data_seed = 0).
        burst_pairs: bursty curriculum (a deviation from the paper, off at 0): early training sequences
            draw their pairs from only this many training pairs each, so queries repeat earlier inputs
            and copying them pays; the share of such sequences falls linearly from 1 at step 0 to 0 at
            ``burst_steps``. Evaluation never uses it.
        burst_steps: length of the bursty curriculum in optimizer steps.
        curriculum_n_id: task curriculum (a deviation from the paper, off at 0): for the first
            ``curriculum_steps`` steps, batches hold only the first this many pre-training tasks (a
            divisor of batch_size), which a model learns to tell apart quickly; then all n_id.
        curriculum_steps: length of the task curriculum in optimizer steps.
    """

    p: int = 29
    n_var: int = 2
    rule: Literal["rectangular", "random"] = "rectangular"
    n_id: int = 512
    n_ood: int = 256
    alpha: float = 0.6
    n_ctx: int = 32
    shared_inputs: bool = True
    replacement: bool = True
    split_seed: int = 0
    ood_val_fraction: float = 0.5
    burst_pairs: int = 0
    burst_steps: int = 0
    curriculum_n_id: int = 0
    curriculum_steps: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """The pre-LN RoPE decoder (PAPER.md §2.1).

    Attributes:
        d_model: residual-stream width.
        n_layers: number of transformer blocks (the paper's depth d).
        n_heads: attention heads per block; d_model must be divisible by it.
        mlp_ratio: MLP hidden width as a multiple of d_model (ReLU MLP ×4 in the paper).
        rope_theta: RoPE base θ.
        attention: ``sdpa`` (PyTorch fused kernel), ``manual`` (explicit softmax), or ``auto``
            (manual on the CPU, where it is faster in bf16; sdpa elsewhere).
        init_std: standard deviation of every weight matrix at init (0.02, the official code). At a
            width below the paper's 512 the same σ gives smaller attention logits and slower escapes
            from the early plateau; 0.02·√(512/d_model) keeps σ·√d_model at the paper's value
            (a deviation, documented per preset).
        role_embedding: add a learned embedding of each token's role in its example (x, y or z, i.e.
            position mod 3; position mod n_var + 1 in general) to the token embedding. A deviation from the paper
            (which has no positional embedding): with RoPE alone the shared x/y/z vocabulary leaves a token's role
            to be inferred, because RoPE's fastest rotation (1 rad per position) cannot express a
            period-3 pattern.
    """

    d_model: int = 512
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    rope_theta: float = 10_000.0
    attention: Literal["auto", "sdpa", "manual"] = "auto"
    init_std: float = 0.02
    role_embedding: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, evaluation and numerics (PAPER.md §2.3).

    Attributes:
        steps: optimizer steps.
        batch_size: sequences per step; a multiple of n_id (balanced batches, PAPER.md §1.8).
        lr: peak learning rate.
        weight_decay: decoupled AdamW weight decay on parameters with ≥ 2 dims only.
        warmup_steps: linear warmup from ``warmup_start``·lr to lr.
        warmup_start: warmup starts at this fraction of lr (0.01 in the paper).
        final_lr_ratio: cosine decay ends at this fraction of lr (0.1 in the paper).
        decay_steps: 0 (the paper): the cosine runs over all steps after warmup. N > 0: the lr stays
            at its peak after warmup and the cosine runs over the last N steps only
            ("warmup-stable-decay", Hägele et al. 2024, arXiv 2405.18392). Up to step ``steps - N``
            such a run is identical to the constant-lr run (final_lr_ratio 1) of the same seed.
        weight_decay_step: from this 0-based optimizer step on, the weight decay is ``late_weight_decay``;
            0 (default, the paper) keeps ``weight_decay`` throughout. A deviation from the paper: a low
            weight decay while the in-context circuit forms, a higher one afterwards to clean up (weight
            decay drives the clean-up phase of grokking, Nanda et al. 2023, arXiv 2301.05217).
        late_weight_decay: the weight decay from ``weight_decay_step`` on (0 turns it off from there).
        grokfast_lambda: the Grokfast-EMA gradient filter (Lee et al. 2024, arXiv 2405.20233), a deviation
            from the paper: before each optimizer step every gradient g gets this times its exponential
            moving average added, amplifying the slow component reported to drive grokking. 0 (default)
            turns it off; the authors use 2.
        grokfast_alpha: the decay of that moving average (the authors' 0.98).
        optimizer: ``adamw`` (the paper) or ``muon``: Muon on the blocks' weight matrices with AdamW on the
            rest (:class:`modicl.steps.MuonAdamW`; a deviation from the paper, reported to shorten
            grokking delays, Tveit et al. 2025, arXiv 2504.16041). Same lr, schedule and weight decay.
        muon_ns_dtype: precision of Muon's Newton–Schulz iteration: ``auto`` (bf16 on CUDA and on CPUs with
            native bf16, where it is bit for bit ``torch.optim.Muon``; fp32 on CPUs without, which would
            emulate bf16 several times slower), ``bf16`` (torch.optim.Muon everywhere: how Muon runs made
            on an AVX2-only CPU before this field existed replay) or ``fp32``.
        beta1: AdamW's first-moment decay (0.9 in the paper).
        beta2: AdamW's second-moment decay (0.98 in the paper).
        eps: AdamW's denominator constant.
        eval_every: evaluate (and checkpoint ``last``) every this many steps, and at the end.
        eval_sequences: sequences per evaluation set, spread evenly over the set's tasks.
        eval_batch_size: sequences per forward pass during evaluation.
        dtype: ``auto`` (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), ``fp32``, ``bf16``.
        compile: ``auto`` (on for CUDA only), ``on`` or ``off``; falls back to eager with a warning when
            the compiler itself fails (not on other errors, such as running out of memory) or when the first
            compiled step's loss or gradients differ from eager (a miscompiled kernel).
        compile_mode: ``torch.compile`` mode: ``default``, ``reduce-overhead`` (CUDA graphs: less launch
            overhead for small models) or ``max-autotune``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` …
        threads: CPU threads for torch (0 leaves torch's default).
        keep_checkpoints: which evaluations keep a checkpoint of their own besides ``last`` and
            ``best_ood``: ``none``, ``all``, ``log`` (step 0 and the first evaluation after each power of
            two), ``every:N`` or ``log+every:N`` (:mod:`modicl.history`); open them with ``--checkpoint
            step:N``, branch from them with ``modicl train --from RUN@step:N``.
    """

    steps: int = 200_000
    batch_size: int = 1024
    lr: float = 1.5e-4
    weight_decay: float = 2.0
    warmup_steps: int = 10_000
    warmup_start: float = 0.01
    final_lr_ratio: float = 0.1
    decay_steps: int = 0
    weight_decay_step: int = 0
    late_weight_decay: float = 0.0
    grokfast_lambda: float = 0.0
    grokfast_alpha: float = 0.98
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_ns_dtype: Literal["auto", "bf16", "fp32"] = "auto"
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    eval_every: int = 1000
    eval_sequences: int = 1024
    eval_batch_size: int = 512
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    device: str = "auto"
    threads: int = 0
    keep_checkpoints: str = "none"


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory.

    Attributes:
        task, model, train: the three parts above.
        seed: the default of the three seeds below.
        task_seed: seeds the pre-training task vectors and the o.o.d. shuffle and split (None: ``seed``).
        init_seed: seeds the model initialisation (None: ``seed``).
        data_seed: seeds the training data stream and the evaluation sequences (None: ``seed``).
        phase_threshold: a set counts as solved at novel-query last-position accuracy ≥ this
            (see :func:`modicl.phases.classify_phase`).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1
    phase_threshold: float = 0.5
    task_seed: int | None = None
    init_seed: int | None = None
    data_seed: int | None = None


# The parts of a RunConfig, by field name: config.json's nested objects and the ``part.`` of a field path.
PARTS: dict[str, type] = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Seeds:
    """The three resolved seeds of a run (see :class:`RunConfig`)."""

    task: int
    init: int
    data: int


def run_seeds(cfg: RunConfig) -> Seeds:
    """The task, init and data seeds of ``cfg``, each falling back to ``cfg.seed``."""

    def pick(s: int | None) -> int:
        return cfg.seed if s is None else s

    return Seeds(task=pick(cfg.task_seed), init=pick(cfg.init_seed), data=pick(cfg.data_seed))


def is_prime(n: int) -> bool:
    """Trial-division primality test (n is at most a few hundred here)."""
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _nearest_multiples(n: int, k: int) -> str:
    lo = max(k, (n // k) * k)
    hi = lo + k if lo <= n else lo
    return f"{lo}" if lo == hi else f"{lo} or {hi}"


# Seeds feed numpy's SeedSequence (non-negative) and torch.manual_seed (< 2**64, with small offsets added):
# the one limit for every seed modicl takes, config fields and command-line flags alike.
SEED_MAX = 2**63 - 1


def check_seed(seed: object, name: str) -> None:
    """Raise ConfigError naming ``name`` (a field, an argument or a flag) unless ``seed`` is an int in
    [0, :data:`SEED_MAX`]; the one rule for config fields, library arguments and command-line flags."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{name} {seed} must be an integer in [0, 2**63 - 1]")


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_ranges(cfg: RunConfig) -> None:
    """Types, signs and finiteness of every field; one ConfigError naming the first field that fails."""
    for part in PARTS:
        for f in dataclasses.fields(getattr(cfg, part)):
            value = getattr(getattr(cfg, part), f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{part}.{f.name} = {value} must be a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{part}.{f.name} = {value} must be ≥ 0")
    seeds = [("seed", cfg.seed), ("task.split_seed", cfg.task.split_seed)]
    seeds += [(n, getattr(cfg, n)) for n in ("task_seed", "init_seed", "data_seed") if getattr(cfg, n) is not None]
    for name, seed in seeds:
        check_seed(seed, f"{name} =")
    tr = cfg.train
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(tr, name) < 1.0:
            raise ConfigError(
                f"train.{name} = {getattr(tr, name)} must be in [0, 1) (AdamW's moment decay; 0.9 and 0.98 in the "
                "paper)"
            )
    if not tr.eps > 0:
        raise ConfigError(f"train.eps = {tr.eps} must be > 0 (AdamW's denominator guard; 1e-8 in the paper)")
    if not isinstance(tr.device, str) or not _DEVICE.fullmatch(tr.device):
        raise ConfigError(f"train.device = {tr.device!r} is not supported; use auto, cpu or cuda[:N]")
    if not cfg.model.init_std > 0:
        raise ConfigError(f"model.init_std = {cfg.model.init_std} must be > 0 (0.02 in the paper)")
    if cfg.task.burst_pairs and not cfg.task.burst_steps:
        raise ConfigError(
            f"task.burst_pairs = {cfg.task.burst_pairs} needs task.burst_steps > 0 (the curriculum's length), or set "
            "burst_pairs 0"
        )
    t = cfg.task
    if t.curriculum_n_id and not (
        t.curriculum_steps and t.curriculum_n_id <= t.n_id and cfg.train.batch_size % t.curriculum_n_id == 0
    ):
        raise ConfigError(
            f"task.curriculum_n_id = {t.curriculum_n_id} must be ≤ n_id ({t.n_id}), divide train.batch_size "
            f"({cfg.train.batch_size}) and come with task.curriculum_steps > 0; or set it 0"
        )
    if not math.isfinite(cfg.phase_threshold):
        raise ConfigError(f"phase_threshold = {cfg.phase_threshold} must be a finite number")


def _valid_head_counts(d_model: int) -> list[int]:
    """Head counts up to 16 that divide d_model into an even head dimension (RoPE rotates pairs)."""
    return [h for h in range(1, 17) if d_model % h == 0 and (d_model // h) % 2 == 0]


def validate(cfg: RunConfig) -> RunConfig:
    """Check that ``cfg`` can work; return it unchanged.

    Raises:
        ConfigError: with a one-line message naming the field and what to change, for a non-prime p,
            a task family modicl does not run (:func:`modicl.family.check`), n_id ≥ p**n_var (no o.o.d.
            task left) or < 1, n_id not a multiple of 4 under the rectangular rule,
            α outside (0, 1) or leaving an empty split, n_ctx < 1, a batch size that is not a multiple of
            n_id, d_model not divisible by n_heads (or an odd head dimension, which RoPE cannot rotate),
            non-positive sizes or learning rates, a negative or too large seed, a non-finite float,
            AdamW betas outside [0, 1) or eps ≤ 0, and a device other than auto, cpu or cuda[:N].
    """
    t, m, tr = cfg.task, cfg.model, cfg.train
    if not is_prime(t.p):
        raise ConfigError(f"task.p = {t.p} is not prime; tasks live in Z_p, use a prime such as 7, 11, 13 or 29")
    if t.rule not in ("rectangular", "random"):
        raise ConfigError(f"task.rule = {t.rule!r}; use 'rectangular' or 'random'")
    problem = family.check(t.p, t.n_var, t.rule)
    if problem:
        raise ConfigError(problem)
    n_vec, space = family.n_vectors(t.p, t.n_var), family.space(t.n_var)  # tasks and inputs alike
    if not 1 <= t.n_id < n_vec:
        raise ConfigError(f"task.n_id = {t.n_id} must be in [1, {space} - 1 = {n_vec - 1}] so that o.o.d. tasks remain")
    if t.rule == "rectangular":
        if t.n_id % 4:
            raise ConfigError(
                f"task.n_id = {t.n_id} is not a multiple of 4 (rectangular rule: 4 tasks per rectangle); "
                f"use {_nearest_multiples(t.n_id, 4)}, or --task.rule random"
            )
        if t.p < 4:
            raise ConfigError(f"task.p = {t.p} is too small for the rectangular rule; use p ≥ 5")
    if t.n_ood < 1:
        raise ConfigError(f"task.n_ood = {t.n_ood} must be ≥ 1")
    if not 0.0 < t.alpha < 1.0:
        raise ConfigError(f"task.alpha = {t.alpha} must lie strictly between 0 and 1")
    n_train = round(n_vec * t.alpha)
    if not 1 <= n_train < n_vec:
        raise ConfigError(f"task.alpha = {t.alpha} leaves an empty train or test split of the {n_vec} inputs")
    if t.n_ctx < 1:
        raise ConfigError(f"task.n_ctx = {t.n_ctx} must be ≥ 1 example per sequence")
    if not 0.0 < t.ood_val_fraction < 1.0:
        raise ConfigError(f"task.ood_val_fraction = {t.ood_val_fraction} must lie strictly between 0 and 1 (e.g. 0.5)")
    n_held_out = n_vec - t.n_id
    if int(n_held_out * t.ood_val_fraction) < 1 or n_held_out - int(n_held_out * t.ood_val_fraction) < 1:
        raise ConfigError(
            f"task.n_id = {t.n_id} leaves {n_held_out} held-out task vectors, too few for a validation and a test "
            f"o.o.d. task at task.ood_val_fraction = {t.ood_val_fraction}; lower n_id or change the fraction"
        )
    if tr.batch_size < 1 or tr.batch_size % t.n_id:
        raise ConfigError(
            f"train.batch_size = {tr.batch_size} is not a multiple of task.n_id = {t.n_id} (balanced batches); "
            f"use {_nearest_multiples(tr.batch_size, t.n_id)}"
        )
    if m.d_model < 1 or m.n_heads < 1 or m.n_layers < 1 or m.mlp_ratio < 1:
        raise ConfigError("model.d_model, model.n_heads, model.n_layers and model.mlp_ratio must be ≥ 1")
    if m.d_model % m.n_heads:
        raise ConfigError(
            f"model.d_model = {m.d_model} is not divisible by model.n_heads = {m.n_heads}; "
            f"use n_heads in {_valid_head_counts(m.d_model)} (the head dimension must be even)"
        )
    if (m.d_model // m.n_heads) % 2:
        raise ConfigError(
            f"head dimension {m.d_model // m.n_heads} is odd; RoPE rotates pairs, make d_model / n_heads even"
            f" (n_heads in {_valid_head_counts(m.d_model)} for d_model {m.d_model})"
        )
    if tr.steps < 1 or tr.eval_every < 1 or tr.eval_sequences < 1 or tr.eval_batch_size < 1:
        raise ConfigError("train.steps, train.eval_every, train.eval_sequences and train.eval_batch_size must be ≥ 1")
    if not tr.lr > 0:
        raise ConfigError(f"train.lr must be a finite number > 0 (got {tr.lr})")
    if tr.weight_decay < 0 or tr.late_weight_decay < 0 or tr.warmup_steps < 0:
        raise ConfigError(
            f"train.weight_decay ({tr.weight_decay}), train.late_weight_decay ({tr.late_weight_decay}) "
            f"and train.warmup_steps ({tr.warmup_steps}) must be ≥ 0"
        )
    if not 0.0 < tr.warmup_start <= 1.0 or not 0.0 <= tr.final_lr_ratio <= 1.0:
        raise ConfigError("train.warmup_start must be in (0, 1] and train.final_lr_ratio in [0, 1] (fractions of lr)")
    if tr.decay_steps < 0 or tr.decay_steps > max(0, tr.steps - tr.warmup_steps):
        raise ConfigError(
            f"train.decay_steps ({tr.decay_steps}) must be between 0 and train.steps - train.warmup_steps "
            f"({max(0, tr.steps - tr.warmup_steps)}) [{tr.steps} - {tr.warmup_steps}, at least 0]; lower it: 0 decays "
            f"over all steps after warmup"
        )
    if tr.decay_steps and tr.final_lr_ratio == 1.0:
        raise ConfigError(
            f"train.decay_steps = {tr.decay_steps} has no effect with train.final_lr_ratio = 1 (a constant lr); "
            "set train.final_lr_ratio to where the decay should end (e.g. 0) or decay_steps to 0"
        )
    if tr.weight_decay_step and not 0 < tr.weight_decay_step < tr.steps:
        raise ConfigError(
            f"train.weight_decay_step ({tr.weight_decay_step}) must be in 1 … train.steps - 1 "
            f"({tr.steps - 1}); 0 keeps one weight decay"
        )
    if tr.late_weight_decay and not tr.weight_decay_step:
        raise ConfigError(
            f"train.late_weight_decay = {tr.late_weight_decay} needs train.weight_decay_step, the step it starts at"
        )
    if tr.grokfast_lambda < 0 or not 0.0 <= tr.grokfast_alpha < 1.0:
        raise ConfigError(
            f"train.grokfast_lambda ({tr.grokfast_lambda}) must be ≥ 0 (0 turns the filter off) and "
            f"train.grokfast_alpha ({tr.grokfast_alpha}) in [0, 1) (the EMA decay; 0.98 in Grokfast)"
        )
    try:
        parse_schedule(tr.keep_checkpoints, tr.eval_every)
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    if not m.rope_theta > 1.0:
        raise ConfigError(f"model.rope_theta = {m.rope_theta} must be > 1 (the RoPE base; 10 000 in the paper)")
    if not 0.0 < cfg.phase_threshold <= 1.0:
        raise ConfigError(f"phase_threshold = {cfg.phase_threshold} must be in (0, 1]")
    _check_ranges(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain JSON-able nested dicts."""
    return dataclasses.asdict(cfg)


def _has_type(value: Any, t: Any) -> bool:
    """Whether a JSON value fits the annotation ``t`` of a config field (ints pass for floats, not bools)."""
    origin = typing.get_origin(t)
    if origin is Literal:
        return value in typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in typing.get_args(t))
    if t is type(None):
        return value is None
    if t is bool:
        return isinstance(value, bool)
    if t in (int, float):
        return isinstance(value, (int, float) if t is float else int) and not isinstance(value, bool)
    if t is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, (tuple, list))
    return True


def _check_types(cls: type, values: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in hints and key not in PARTS and not _has_type(value, hints[key]):
            want = (
                " or ".join(repr(a) for a in typing.get_args(hints[key]))
                if typing.get_origin(hints[key]) is Literal
                else str(hints[key]).replace("<class '", "").replace("'>", "")
            )
            raise ConfigError(f"{prefix}{key} = {json.dumps(value)} is not {want}")


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Inverse of :func:`to_dict`. Raises ConfigError naming the field for a value of the wrong type (e.g.
    ``task.p = null``) and for unknown keys (a config from a newer modicl)."""
    if not isinstance(d, dict) or not all(isinstance(d.get(k, {}), dict) for k in PARTS):
        raise ConfigError("config is not an object of task, model and train objects")
    _check_types(RunConfig, d, "")
    for key, cls in PARTS.items():
        _check_types(cls, d.get(key, {}), f"{key}.")
    kwargs: dict[str, Any] = {}
    try:
        for key, value in d.items():
            kwargs[key] = PARTS[key](**value) if key in PARTS else value
        return RunConfig(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config does not match this modicl version: {e}") from None
