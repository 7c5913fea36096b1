"""LoopNeRF: 3D video textures from a monocular video.

Importing this package is cheap: torch, taichi and open3d load only when a name that
needs them is first used. The Python API (see README "Python API"):

- `load_capture(path, **options)`: a `Capture` from any supported capture format;
- `fit(capture, out, preset=...)`: stage 1 in a new run folder, returns a `Run`;
- `Run(path)`: a run folder; `run.select()`, `run.distill(frames=...)`, `run.bake()`,
  `run.evaluate()`, `run.renderer(w, h)`; every path and reader of the run (`RunFolder`);
- `Renderer`, `load_loop`: the viewer's renderer and the `.loop` reader.
"""

__version__ = "0.1.0"

from loopnerf.errors import LoopNeRFError

__all__ = ["LoopNeRFError", "__version__", "load_capture", "fit", "Run", "Renderer", "load_loop"]

# public name -> (module, attribute), imported on first use
_LAZY = {
    "load_capture": ("loopnerf.data", "load_capture"),
    "fit": ("loopnerf.run", "fit"),
    "Run": ("loopnerf.run", "Run"),
    "Renderer": ("loopnerf.viewer.renderer", "Renderer"),
    "load_loop": ("loopnerf.export.loop_format", "load_loop"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'loopnerf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
