"""Keep freed host memory for reuse: training steps without page faults.

A training step on the CPU allocates and frees the same plane-sized buffers every step
(the hexplane kernels' outputs and kept samples, 1-10 MB each; every plane's gradient,
31 MB in all on the `cpu` preset). glibc's malloc serves blocks that size from fresh
`mmap`s, or hands the freed top of its heap back to the system, so each step touches
new pages and the kernel zero-fills them on first write; in a virtual machine a page
fault costs several microseconds. `keep_freed_memory()` raises glibc's mmap threshold
and trim threshold, so those blocks come from the heap and stay there: measured on
this 2-core VM, a `cpu`-preset stage-1 step 124 vs 155 ms (20 interleaved steps each).

The cost is that a process keeps up to `TRIM_BYTES` of freed memory at the top of its
heap instead of returning it. Trainers call this once (a no-op where malloc is not
glibc's, e.g. macOS; `LOOPNERF_KEEP_HEAP=0` turns it off).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 256 << 20
"""Blocks under this are served from the heap (glibc's default starts at 128 KiB and
rises to at most 32 MiB)."""
TRIM_BYTES = 1 << 30
"""Free memory the heap keeps at its top before giving it back."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks for reuse (once per process). True when it
    applied (Linux with glibc, not turned off by LOOPNERF_KEEP_HEAP=0)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("LOOPNERF_KEEP_HEAP", "1").strip().lower() in ("0", "off", "no", "false"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    return _applied
