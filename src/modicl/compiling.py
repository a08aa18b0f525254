"""Telling a failure of ``torch.compile`` itself from a failure of the program it compiles.

A training step falls back to eager execution only when the compiler fails (Dynamo's tracer, a backend
such as Inductor, the C++ or Triton toolchain): an out-of-memory error or a bug in the model must stop
the run, not be retried eagerly and hidden. The exception classes are those of ``torch._dynamo.exc`` and
``torch._inductor.exc`` (PyTorch's compiler documentation, "torch.compile troubleshooting").
"""

from __future__ import annotations

import types

import torch


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
