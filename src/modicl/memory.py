"""How much memory one training run needs, and how many runs fit in one ensemble on a device.

A training step holds the fp32 parameters, their gradients and AdamW's two moments (16 bytes per
parameter), the activations autograd saves for the backward pass, and during the backward a working
set of gradient buffers. The saved activations are counted op by op from this package's model
(:mod:`modicl.model`): per token and layer the residual stream before each LayerNorm (fp32, 2·4d
bytes), the inputs of the four linears cast to the compute dtype (c·d each for qkv, output and fc,
c·4d for the ReLU output the MLP projection reads, in place), RoPE's rotated q and k (c·2d), and attention's
own state: the [H, T] probabilities and a contiguous copy of v (c·d) on the explicit path; the qkv
output v is a view of (c·3d), the output and the log-sum-exp under SDPA. Under bf16 autocast every linear also saves
its weight cast to bf16.
The last layer keeps its keys and values at every position and the rest only at the n_ctx query
positions, since the loss reads the logits there alone (:meth:`modicl.model.Transformer.forward`).
``tests/test_memory.py`` checks the count against autograd's saved tensors and the peak RSS of a CPU
step; ``benchmarks/gpu_checks.py`` against ``torch.cuda.max_memory_allocated``.

:func:`ensemble_capacity` uses it to cap the members of a vmap ensemble: members × (activations +
optimizer state) must fit in the device's free memory (CUDA) or in :data:`CPU_MEMORY_BUDGET`. An
ensemble also gains nothing once one model keeps the device busy, so :func:`overhead_bound` groups only
models whose step is small (:data:`OVERHEAD_BOUND_GFLOP`); the paper's d_model 512, batch 1024 runs
train one by one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .config import RunConfig
from .family import input_length
from .model import count_params, train_flops_per_step, uses_explicit_attention

# A step of fewer model FLOPs than this is bound by kernel launches and Python on a current GPU
# (≈ 0.25 ms of compute at 400 TFLOP/s, about the time of the step's ≈ 100 kernel launches), so
# stacking members along a vmap axis pays. An estimate until measured (README, GPU section).
OVERHEAD_BOUND_GFLOP = 100.0
# Memory an ensemble may plan for where no CUDA device can be asked (a CPU, or a SLURM submission
# from a login node): a quarter of an 80 GB GPU, a fraction every GPU of that class leaves free.
CPU_MEMORY_BUDGET = 20 * 2**30
# Share of a CUDA device's free memory an ensemble plans for (the rest: CUDA context, allocator slack).
CUDA_FREE_FRACTION = 0.8


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one run needs during a training step.

    Attributes:
        state: parameters, gradients and AdamW moments (fp32), 16 bytes per parameter.
        saved: activations autograd saves in the forward for the backward.
        working: extra peak during the backward: gradient buffers of one layer in fp32, the logits'
            gradient, and 15 % of ``saved`` for allocator slack.
    """

    state: int
    saved: int
    working: int

    @property
    def step_peak(self) -> int:
        """Peak bytes a step adds on top of :attr:`state`."""
        return self.saved + self.working

    @property
    def total(self) -> int:
        """Peak bytes of the run: state + saved + working."""
        return self.state + self.saved + self.working


def estimate_memory(cfg: RunConfig, dtype: torch.dtype, device: torch.device | str = "cpu") -> MemoryEstimate:
    """Estimate the memory of one training step of ``cfg`` (see the module docstring).

    Args:
        cfg: the run config (model shape, p, n_ctx, batch size).
        dtype: the compute dtype, ``torch.bfloat16`` (autocast) or ``torch.float32``.
        device: decides the attention path (explicit on CPUs under ``attention auto``, SDPA elsewhere).
    Returns:
        A :class:`MemoryEstimate` in bytes.
    """
    device = torch.device(device)
    d, L, r, V = cfg.model.d_model, cfg.model.n_layers, cfg.model.mlp_ratio, cfg.task.p
    B, T = cfg.train.batch_size, input_length(cfg.task.n_ctx, cfg.task.n_var)
    c = 2 if dtype == torch.bfloat16 else 4
    explicit = uses_explicit_attention(cfg.model.attention, device.type)
    weights = c * (4 + 2 * r) * d * d if c == 2 else 0  # bf16 copies of each layer's weights under autocast
    Tq = cfg.task.n_ctx  # the query positions, where the last block and the unembedding run
    final = B * Tq * (4 * d + c * d) + (c * V * d if c == 2 else 0) + B * Tq * V * 4  # ln_f, unembed, log-softmax
    saved = (L - 1) * B * T * _saved_per_token(cfg, c, explicit) + B * _saved_last_layer(cfg, c, explicit)
    saved += L * weights + final
    # Backward: gradient buffers as large as one layer's activations in fp32 (the residual stream's
    # gradients are fp32 whatever the compute dtype), the logits' gradient, and 15 % of the saved
    # bytes for buffers freed too late to be reused (fitted to the peak RSS of CPU steps, test_memory.py).
    working = B * T * _saved_per_token(cfg, 4, explicit) + B * T * V * (4 + c) + saved * 15 // 100
    return MemoryEstimate(state=16 * count_params(cfg), saved=saved, working=working)


def _saved_per_token(cfg: RunConfig, c: int, explicit: bool) -> int:
    """Bytes one layer saves per token with compute dtype size ``c`` (module docstring)."""
    d, H, r = cfg.model.d_model, cfg.model.n_heads, cfg.model.mlp_ratio
    T = input_length(cfg.task.n_ctx, cfg.task.n_var)
    per_token = 2 * 4 * d + 16  # residual stream before ln1 and ln2 (fp32) and their mean / rstd
    per_token += c * (d + d + d + r * d)  # inputs of qkv, output projection, fc; the ReLU output proj reads
    if explicit:  # rotated q, k; the contiguous copy of v the matmul makes; the pattern
        return per_token + c * (2 * d + d) + c * H * T
    return per_token + c * (2 * d + 3 * d) + c * d + 4 * H  # rotated q, k; the qkv output v views; SDPA out, lse


def _saved_last_layer(cfg: RunConfig, c: int, explicit: bool) -> int:
    """Bytes the last layer saves per sequence: keys and values at all T positions, everything else only at
    the n_ctx query positions (:meth:`modicl.model.Transformer.forward` with ``positions``)."""
    d, H, r = cfg.model.d_model, cfg.model.n_heads, cfg.model.mlp_ratio
    T, Tq = input_length(cfg.task.n_ctx, cfg.task.n_var), cfg.task.n_ctx
    every = 4 * d + 8 + c * d + c * d  # residual before ln1 and its mean / rstd; the key/value input; rotated k
    every += c * d if explicit else c * 2 * d  # the contiguous copy of v; or the key/value output v views
    at_query = c * d + c * d  # the query input (a contiguous copy of the slice, or its cast); rotated q
    at_query += c * H * T if explicit else c * d + 4 * H  # the pattern rows; or SDPA out and lse
    at_query += c * d + 4 * d + 8 + c * d + c * r * d  # output projection input, residual before ln2, fc, ReLU
    return T * every + Tq * at_query


def overhead_bound(cfg: RunConfig) -> bool:
    """True when one step of ``cfg`` is small enough (< :data:`OVERHEAD_BOUND_GFLOP` model GFLOP) that
    a GPU spends it mostly on launches and Python, so training several such runs as one vmap ensemble
    pays; False for the paper's sizes (≈ 2 700 GFLOP per step at depth 2)."""
    return train_flops_per_step(cfg) < OVERHEAD_BOUND_GFLOP * 1e9


def memory_budget(device: torch.device | str | None = None) -> int:
    """Bytes an ensemble may plan for: :data:`CUDA_FREE_FRACTION` of the free memory of ``device`` when it
    is a CUDA device (default: the current one, if CUDA is available), else :data:`CPU_MEMORY_BUDGET`."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FREE_FRACTION)
    return CPU_MEMORY_BUDGET


def ensemble_capacity(
    cfg: RunConfig, budget: int, dtype: torch.dtype = torch.bfloat16, device: str = "cuda", max_members: int = 64
) -> int:
    """How many runs shaped like ``cfg`` may train as one ensemble within ``budget`` bytes.

    1 when the step is not :func:`overhead_bound` (an ensemble gains nothing) or when two members do not
    fit; else min(``max_members``, budget // per-member total). Never less than 1: a single run that does
    not fit is the device's problem to report, not a reason to drop the point.
    """
    if not overhead_bound(cfg):
        return 1
    per_member = estimate_memory(cfg, dtype, device).total
    return max(1, min(max_members, budget // max(per_member, 1)))


def measure_saved_bytes(model: torch.nn.Module, tokens: torch.Tensor, autocast=None, *, n_var: int) -> int:
    """Bytes of the distinct storages autograd saves in one training forward of ``model`` on ``tokens``
    (int64 [B, (n_var + 1)·n_ctx]), under ``autocast`` (a context manager, default none); parameters excluded."""
    from .steps import z_loss

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast or contextlib.nullcontext():
        z_loss(model, tokens, n_var=n_var)
    return sum(seen.values())
