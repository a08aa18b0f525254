"""Muon (Jordan et al. 2024) with the Newton–Schulz iteration in a chosen precision, on single or stacked matrices.

Muon keeps a Nesterov momentum of each weight matrix's gradient, replaces it by an approximately
orthogonal matrix (five steps of a quintic Newton–Schulz iteration, the coefficients of Jordan et al.)
and applies decoupled weight decay and Moonshot's learning-rate scale (``match_rms_adamw``: 0.2·√max(A, B),
so AdamW's lr and weight decay carry over; Liu et al. 2025, arXiv 2502.16982). The update is
``torch.optim.Muon``'s step for step, and the state dict has its layout, so checkpoints written with
either load in the other. Two things differ:

* **precision of the iteration** (``ns_dtype``): torch always iterates in bf16, which a CPU without bf16
  instructions (AVX2 only) emulates at a fraction of its fp32 speed. ``auto`` iterates in bf16 on a GPU or
  a CPU with native bf16 (then bit for bit torch's Muon) and in fp32 elsewhere.
* **stacked matrices**: a parameter [N, A, B] is N matrices (the members of a vmap ensemble,
  :class:`modicl.steps.VmapStep`), each orthogonalized and normed on its own with batched matmuls.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan et al.: the quintic's slope at zero is maximal
NS_STEPS = 5
NS_EPS = 1e-7


def resolve_ns_dtype(name: str, device: torch.device) -> torch.dtype:
    """The Newton–Schulz precision for ``train.muon_ns_dtype`` ``name`` (``auto``, ``bf16``, ``fp32``) on
    ``device``: ``auto`` is bf16 on CUDA and on CPUs with native bf16 (:func:`modicl.runtime.cpu_has_native_bf16`),
    fp32 elsewhere. Raises ValueError for another name."""
    from .runtime import cpu_has_native_bf16

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_native_bf16() else torch.float32
    if name in ("bf16", "fp32"):
        return torch.bfloat16 if name == "bf16" else torch.float32
    raise ValueError(f"muon_ns_dtype {name!r}: choose auto, bf16 or fp32")


def orthogonalize(g: Tensor, dtype: torch.dtype = torch.bfloat16, steps: int = NS_STEPS, eps: float = NS_EPS) -> Tensor:
    """The Newton–Schulz approximation of U·Vᵀ for G = U·S·Vᵀ (singular values mapped into ≈ [0.7, 1.2]).

    Args:
        g: [A, B] one matrix or [N, A, B] N matrices, each treated on its own.
        dtype: precision of the iteration (torch.optim.Muon: bf16).
        steps: iterations; eps: floor of the Frobenius norm that scales the input.
    Returns:
        the same shape as ``g``, in ``dtype``. A 2-D input runs torch.optim.Muon's exact operations
        (addmm), so in bf16 the result is bit for bit torch's.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:  # iterate on the wide side: the Gram matrix is the smaller one
        x = x.mT
    if x.dim() == 2:
        x = x / x.norm().clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    else:
        x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.mT
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def lr_scale(shape: torch.Size) -> float:
    """Moonshot's ``match_rms_adamw`` factor 0.2·√max(A, B) of an [A, B] matrix (or [N, A, B] stack)."""
    return 0.2 * math.sqrt(max(shape[-2], shape[-1]))


class Muon(torch.optim.Optimizer):
    """Muon on 2-D weight matrices or [N, A, B] stacks of them (see the module docstring).

    Param groups carry torch.optim.Muon's keys (lr, weight_decay, momentum, nesterov, ns_coefficients,
    eps, ns_steps, adjust_lr_fn) and the state its ``momentum_buffer``, so state dicts are interchangeable;
    the precision ``ns_dtype`` is the optimizer's, not saved (a resume on another CPU kind may change it).

    Raises:
        ValueError: a parameter that is not 2-D or 3-D, or a negative lr, momentum or weight decay.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"Muon needs lr, momentum and weight decay ≥ 0 (got {lr}, {momentum}, {weight_decay})")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": NS_COEFFICIENTS,
            "eps": NS_EPS,
            "ns_steps": NS_STEPS,
            "adjust_lr_fn": "match_rms_adamw",
        }
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() not in (2, 3):
                    raise ValueError(
                        f"Muon takes matrices [A, B] or stacks [N, A, B], not a tensor of shape {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def step(self, closure=None):
        """One Muon step on every parameter with a gradient (``closure`` as in torch.optim)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                update = orthogonalize(update, self.ns_dtype, group["ns_steps"], group["eps"])
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * lr_scale(p.shape))
        return loss
