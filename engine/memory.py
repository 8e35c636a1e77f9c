"""Large CPU tensors without page faults: glibc's malloc told to keep freed memory for the next batch.

glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and gives
it back to the kernel when it is freed. A CNN's activations at batch 32 are such blocks (efficientnet_lite0
at 224 px: a ``(32, 96, 112, 112)`` float32 map is 154 MB), so every forward pass touches hundreds of MB
of new pages, which the kernel zero-fills on first touch. On the 2-core machine of ``benchmarks/`` that
was half the time of a forward pass (per batch of 32 at 224 px: 0.48 s in the kernel beside 0.48 s in
torch; 15.3 ms per image, 6.1 ms with freed memory kept) and makes the CNN arms of ``pixgraph compare``
about twice as fast.

:func:`keep_freed_memory` sets ``M_MMAP_MAX = 0`` (large blocks come from the heap too) and
``M_TRIM_THRESHOLD = -1`` (the heap is never given back), so what one batch frees the next one reuses.
The price: the process keeps its peak heap until it exits (resident memory about 12 % above glibc's
default in a ``compare`` run). The ``pixgraph`` command turns it on unless
``PIXGRAPH_KEEP_FREED_MEMORY=0``; Python code opts in by calling it. Other C libraries (macOS, Windows,
musl) are left alone. Results do not change, only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

__all__ = ["CHILD_ENV", "keep_freed_memory"]

# mallopt(3) parameters of glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: The same setting for processes started later (spawned DDP workers, subprocesses): glibc reads these
#: at start-up (the trim threshold as an unsigned size: 2**62 is "never" in practice).
CHILD_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)}


def _glibc() -> ctypes.CDLL | None:
    """glibc of this process, or None on another platform or C library."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(*, children: bool = True) -> bool:
    """Keep memory freed by this process for its next allocations (glibc only); True when applied.

    Lasts until the process exits. With ``children`` the same setting goes into ``os.environ`` for
    processes started afterwards (variables the user already set are kept as they are). Returns False,
    and changes nothing, where the C library is not glibc.

    Example:
        >>> from engine.memory import keep_freed_memory
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    if applied and children:
        for key, value in CHILD_ENV.items():
            os.environ.setdefault(key, value)
    return applied
