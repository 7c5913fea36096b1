"""The baked `.loop` format, its reference renderer, and engine exports.

Importing this package is cheap: names are resolved lazily (PEP 562), so
`from loopnerf.export import load_loop` pulls in safetensors/torch only when used.

    save_loop(path, baked), load_loop(path) -> BakedLoop, LoopFormatError, BakedLoop
    bake_loop(...) -> BakedLoop                  (loopnerf.export.bake)
    reference renderer: loopnerf.export.reference_render (render_rays, render_camera, ...)
    exports: loopnerf.export.glb / web / ply / layers (surfaces fused from the viewer's
        renders by loopnerf.export.tsdf), CLI in loopnerf.export.command
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "save_loop": "loopnerf.export.loop_format",
    "load_loop": "loopnerf.export.loop_format",
    "read_loop_header": "loopnerf.export.loop_format",
    "LoopFormatError": "loopnerf.export.loop_format",
    "BakedLoop": "loopnerf.export.loop_format",
    "FORMAT_VERSION": "loopnerf.export.loop_format",
    "bake_loop": "loopnerf.export.bake",
    "render_rays": "loopnerf.export.reference_render",
    "render_camera": "loopnerf.export.reference_render",
    "query_density": "loopnerf.export.reference_render",
    "query_color": "loopnerf.export.reference_render",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopnerf.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
