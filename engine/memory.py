"""Large CPU tensors without page faults: glibc's malloc told to keep freed memory for the next batch.

glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and gives
it back to the kernel when it is freed. A CNN's activations at batch 32 are such blocks (efficientnet_lite0
at 224 px: a ``(32, 96, 112, 112)`` float32 map is 154 MB), so every forward pass touches hundreds of MB
of new pages, which the kernel zero-fills on first touch. On the 2-core machine of ``benchmarks/`` that
was more than half the time of a forward pass (``benchmarks/bench_keep_freed_memory.py``, batches of 32
at 224 px: 283,000 page faults and 0.49 s of kernel time per batch, 66.7 images/s; 164.7 with freed
memory kept) and makes the CNN arms of ``pixgraph compare`` about twice as fast.

:func:`keep_freed_memory` sets ``M_MMAP_MAX = 0`` (large blocks come from the heap too) and
``M_TRIM_THRESHOLD = -1`` (the heap is never given back), so what one batch frees the next one reuses.
The price: the process keeps its peak heap until it exits (resident memory about 11 % above glibc's
default in ``make demo``: 3.42 GB against 3.08 GB at most). The ``pixgraph`` command turns it on unless
``PIXGRAPH_KEEP_FREED_MEMORY`` is ``0`` (or ``false``, ``no``, ``off``), which also makes the function
a no-op; Python code opts in by calling it. Results do not change, only where memory comes from.

Limits: it acts on the main thread's heap. A thread other than the main one gets its own glibc heap of
at most 64 MiB, so a larger block allocated there is still mapped afresh (training runs on the main
thread unless ``fit`` is called from another one). Left alone, and ``False`` returned: other C libraries
(macOS, Windows, musl), an allocator preloaded in place of glibc's (jemalloc, tcmalloc, mimalloc through
``LD_PRELOAD``), and a process whose user already chose glibc's malloc settings (``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["CHILD_ENV", "OPT_OUT", "keep_freed_memory"]

#: ``0``, ``false``, ``no`` or ``off`` here turns :func:`keep_freed_memory` into a no-op.
OPT_OUT = "PIXGRAPH_KEEP_FREED_MEMORY"

# mallopt(3) parameters of glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: The same setting for processes started later (spawned DDP workers, subprocesses): glibc reads these
#: at start-up (the trim threshold as an unsigned size: 2**62 is "never" in practice).
CHILD_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)}


#: Environment variables by which a user has already chosen glibc's malloc settings.
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
#: Allocators that replace glibc's malloc when preloaded.
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc and glibc's malloc is in use, else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    if any(name in os.environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: the process's own glibc
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def _user_chose() -> bool:
    """Whether the environment holds glibc malloc settings other than this module's own."""
    own = {k: v for k, v in CHILD_ENV.items() if os.environ.get(k) == v}  # set by an earlier call
    return any(os.environ.get(k) for k in _USER_SETTINGS if k not in own) or (
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    )


def keep_freed_memory(*, children: bool = True) -> bool:
    """Keep memory freed by this process for its next allocations (glibc only); True when applied.

    Lasts until the process exits. With ``children`` the same setting goes into ``os.environ`` for
    processes started afterwards. Returns False, and changes nothing, when ``PIXGRAPH_KEEP_FREED_MEMORY``
    is ``0`` (``false``, ``no``, ``off``), where the C library is not glibc, another allocator is
    preloaded, or the environment already holds the user's own malloc settings (the module's "Limits").

    Example:
        >>> from engine.memory import keep_freed_memory
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    if os.environ.get(OPT_OUT, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    libc = _glibc()
    if libc is None or _user_chose():
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    if applied and children:
        os.environ.update(CHILD_ENV)
    return applied
