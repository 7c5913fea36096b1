"""Lazy, shared Taichi start-up for the viewer.

Importing the viewer never calls `ti.init` (DESIGN §7, §8): the first `Renderer` does,
through `ensure_taichi`. If some other part of LoopNeRF already started Taichi in this
process, it is reused as is — a second `ti.init` would throw away that part's fields.
"""

from __future__ import annotations

import os


def _cuda_available() -> bool:
    """True when an NVIDIA driver is visible (checked without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidia0")


def ensure_taichi(arch: str | None = None) -> str:
    """Start Taichi once per process and return the arch it runs on ("cuda" or "x64", ...).

    Args:
        arch: "cuda", "cpu" or None (CUDA when a GPU is there, else CPU). Ignored when
            Taichi is already running in this process.

    The offline cache is on, so a second start of the viewer skips kernel compilation.
    """
    import taichi as ti
    from taichi.lang import impl

    if impl.get_runtime().prog is not None:
        return impl.current_cfg().arch.name
    want = (arch or os.environ.get("LOOPNERF_ARCH", "")).lower() or None
    kwargs = dict(offline_cache=True, log_level=ti.WARN, default_fp=ti.f32)
    if want in (None, "cuda", "gpu") and (want is not None or _cuda_available()):
        try:
            ti.init(arch=ti.cuda, **kwargs)
            return impl.current_cfg().arch.name
        except Exception:  # no usable CUDA runtime: fall back to the CPU below
            if want is not None:
                raise
    ti.init(arch=ti.cpu, **kwargs)
    return impl.current_cfg().arch.name
