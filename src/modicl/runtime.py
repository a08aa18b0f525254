"""Where and how a process computes: device, compute dtype, threads, compilation, and the CPU's kind.

Every entry point (training, evaluation, analysis, benchmarks) resolves the ``train.device``,
``train.dtype``, ``train.threads`` and ``train.compile`` settings here, so they mean the same
everywhere. Numerics: bf16 autocast on CUDA and on CPUs that compute bf16 natively (x86 avx512_bf16
or AMX, Arm bf16), else fp32; ``torch.compile`` on CUDA only by default. On a CPU the thread count and
the CPU's widest matmul path change the floating-point summation order, hence a run's trajectory, so
:func:`numerics` reports both next to every result. Two neighbours hold the rest of the process
setup: :mod:`modicl.allocator` (glibc heap settings) and :mod:`modicl.compiling` (telling a compiler
failure from a program failure).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from .config import ConfigError, TrainConfig


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        f for line in text.splitlines() if line.startswith(("flags", "Features")) for f in line.split(":", 1)[1].split()
    )


_X86_KINDS = ("avx2", "avx512", "avx512_bf16", "amx")  # narrowest to widest matmul path


def _isa_cap(value: str) -> str | None:
    """The CPU kind that an ISA cap (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) allows at most; ``""`` for
    below AVX2, None for a value this does not know."""
    v = value.strip().upper()
    if v.startswith("SSE") or v in ("AVX", "DEFAULT"):
        return ""
    if v.startswith("AVX2"):
        return "avx2"
    if v.startswith("AVX10"):  # AVX10 includes bf16
        return "amx" if "AMX" in v else "avx512_bf16"
    if v.startswith("AVX512"):
        return "amx" if "AMX" in v else "avx512_bf16" if ("BF16" in v or "FP16" in v) else "avx512"
    return None


def cpu_kind() -> str:
    """The CPU's widest matmul path, which sets numerics and speed: ``amx`` (amx_bf16), ``avx512_bf16``,
    ``avx512``, ``avx2``, or the machine architecture (e.g. ``aarch64``) when none of these applies.

    The environment variables that cap what torch and oneDNN use (``ATEN_CPU_CAPABILITY``,
    ``ONEDNN_MAX_CPU_ISA``) cap the kind too, so ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``
    makes a newer CPU run, and report, the AVX2-only path (fp32 under ``train.dtype = auto``)."""
    flags = _cpu_flags()
    kind = next(
        (
            k
            for f, k in (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))
            if f in flags
        ),
        None,
    )
    if kind is None:
        return os.uname().machine
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = _isa_cap(os.environ.get(var, ""))
        if cap == "":
            return os.uname().machine
        if cap is not None and _X86_KINDS.index(cap) < _X86_KINDS.index(kind):
            kind = cap
    return kind


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions that torch may use (x86 avx512_bf16 / amx_bf16
    within the ISA caps of :func:`cpu_kind`, Arm bf16)."""
    return cpu_kind() in ("amx", "avx512_bf16") or "bf16" in _cpu_flags()


def numerics() -> dict:
    """What decides a CPU run's floating-point trajectory besides its config: torch's thread count and
    the CPU kind (:func:`cpu_kind`)."""
    return {"threads": torch.get_num_threads(), "cpu_kind": cpu_kind()}


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU. Raises ConfigError for a device other than cpu or cuda[:N],
    or a CUDA device that this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device = {name!r} is not a device; use auto, cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asks for CUDA but none is available; use the cpu device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` → bf16 on CUDA and on CPUs with native bf16, else fp32."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward pass, or a no-op context in fp32."""
    if dtype == torch.bfloat16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_compile(name: str, device: torch.device) -> bool:
    """``auto`` → compile on CUDA only (on a CPU compilation costs more than it saves on short runs)."""
    return name == "on" or (name == "auto" and device.type == "cuda")


def setup_process(tc: TrainConfig) -> tuple[torch.device, torch.dtype]:
    """Resolve the device and compute dtype of ``tc``; set torch's thread count (a caller that is a library
    entry point restores it, :func:`restores_threads`). The allocator setting of
    :func:`modicl.allocator.keep_freed_memory` is process-wide and cannot be undone, so only the
    command line and the sweep's own worker processes apply it."""
    device = resolve_device(tc.device)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    return device, resolve_dtype(tc.dtype, device)


def restores_threads(fn):
    """Decorator: torch's thread count is back at its value from before the call when ``fn`` returns or
    raises, so training from a notebook or another program leaves its process as it found it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    return wrapper
