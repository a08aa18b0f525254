"""Keep freed host memory in the process, so CPU training steps stop paying for page faults.

A CPU training step allocates and frees the same multi-megabyte activations every step (the MLP's
[B, T, 4·d] hidden layer is 12 MB in bf16 on the reference config). glibc serves blocks that large
with fresh ``mmap`` pages, or trims them off the heap top when freed, so every step faults its
activations back in page by page: 13 000–26 000 minor faults and 26–41 ms of kernel time per step of
the reference config, ≈ 20 % of the step (measured with ``getrusage``; BENCHMARKS.md). Raising
glibc's mmap and trim thresholds (``mallopt``, glibc manual §3.2.4) keeps the memory in the heap for
reuse; the price is that the process does not hand freed memory back to the OS until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and never trim it (idempotent; process-wide).

    Returns True when the settings were applied; False on non-Linux systems or a C library without
    ``mallopt`` (musl), where nothing changes. Never raises.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(
        mallopt(param, value)
        for param, value in (
            (_M_MMAP_THRESHOLD, 32 << 20),  # glibc's largest allowed value on 64-bit
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_TOP_PAD, 256 << 20),
        )
    )
    _done = ok
    return ok
