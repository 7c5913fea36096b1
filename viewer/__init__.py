"""The real-time viewer of baked loops (`loopnerf view`).

- `renderer.Renderer`: the Taichi renderer of a `.loop` (CUDA or CPU), used by the
  window, headless videos and benchmarks; `renderer.FrameCache` replays frames while
  the camera is still.
- `render_kernel`: the Taichi kernel (imports taichi; loaded on first render).
- `orbit_camera`: the interactive orbit/pan/zoom camera and headless camera paths.
- `app`: the pyglet window; `command`: the `loopnerf view` sub-command.

Importing this package is cheap (numpy only): Taichi starts on the first render.
"""

from loopnerf.viewer.renderer import FrameCache, Intrinsics, Renderer

__all__ = ["FrameCache", "Intrinsics", "Renderer"]
