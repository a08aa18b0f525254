"""Telling a failure of ``torch.compile`` itself from a failure of the program it compiles.

A training step falls back to eager execution only when the compiler fails (Dynamo's tracer, a backend
such as Inductor, the C++ or Triton toolchain), or when the compiled program computes something other than
the eager one (:func:`relative_difference`, checked on a step's first batch): an out-of-memory error or a
bug in the model must stop the run, not be retried eagerly and hidden. The exception classes are those of
``torch._dynamo.exc`` and ``torch._inductor.exc`` (PyTorch's compiler documentation, "torch.compile
troubleshooting").
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence

import torch
from torch import Tensor


def compiler_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean torch.compile itself failed (Dynamo's tracer, a backend such as
    Inductor, the C++/Triton toolchain), as opposed to an error of the program being compiled or of the
    device (a shape bug, ``torch.OutOfMemoryError``), which must propagate."""
    import torch._dynamo.exc as dynamo_exc

    names = [
        (dynamo_exc, "BackendCompilerFailed"),
        (dynamo_exc, "InternalTorchDynamoError"),
        (dynamo_exc, "Unsupported"),
    ]
    inductor_exc: types.ModuleType | None
    try:
        import torch._inductor.exc as inductor_exc
    except ImportError:  # pragma: no cover - a torch build without Inductor
        inductor_exc = None
    if inductor_exc is not None:
        names += [
            (inductor_exc, n)
            for n in (
                "InductorError",
                "LoweringException",
                "OperatorIssue",
                "CppCompileError",
                "CUDACompileError",
                "InvalidCxxCompiler",
                "TritonMissing",
                "GPUTooOldForTriton",
            )
        ]
    return tuple(getattr(mod, n) for mod, n in names if isinstance(getattr(mod, n, None), type))


def is_compiler_error(e: BaseException) -> bool:
    """True when ``e`` is a compiler failure (:func:`compiler_errors`) that does not wrap an out-of-memory
    error (Inductor's autotuning can run out of memory inside the compiler; that is the device's limit)."""
    if not isinstance(e, compiler_errors()):
        return False
    inner = getattr(e, "inner_exception", None) or e.__cause__
    return not isinstance(inner, torch.OutOfMemoryError)


def graph_break_count() -> int:
    """Graph breaks Dynamo has recorded in this process so far (``torch._dynamo.utils.counters``)."""
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


def relative_difference(eager: Sequence[Tensor | None], compiled: Sequence[Tensor | None]) -> float:
    """‖compiled − eager‖₂ / ‖eager‖₂ over all the tensors of each sequence together (the gradients of one
    backward pass, say; any shapes), in fp32: one norm over the whole set, so a tensor whose gradient
    nearly cancels (a bias, an embedding row the batch rarely uses) cannot turn rounding into a large
    ratio. ``inf`` when a compiled tensor is not finite or only one of a pair is None (a gradient one side
    computed and the other did not); an all-zero eager set is compared absolutely. Used to catch a
    compiler that returns wrong numbers without failing (Inductor's generated one-thread code under
    ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU did: BENCHMARKS.md).

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(eager) != len(compiled):
        raise ValueError(f"{len(eager)} eager tensors against {len(compiled)} compiled ones")
    diff_sq, eager_sq = 0.0, 0.0
    for e, c in zip(eager, compiled, strict=True):
        if e is None or c is None:
            if e is not c:
                return math.inf
            continue
        c32, e32 = c.detach().float(), e.detach().float()
        if not torch.isfinite(c32).all():
            return math.inf
        diff_sq += float(torch.linalg.vector_norm(c32 - e32)) ** 2
        eager_sq += float(torch.linalg.vector_norm(e32)) ** 2
    return math.sqrt(diff_sq) / (math.sqrt(eager_sq) if eager_sq > 0 else 1.0)
