"""Taichi kernels for LoopNeRF's two hot loops, callable from PyTorch with autograd.

    from loopnerf.kernels import hexplane_features, volume_render, reference

* `hexplane_features(points [N, D], planes, *, wrap_time=False, channels_last=False)
  -> [N, C * S]`: multiscale hex-/tri-plane interpolation (k-Planes).
* `volume_render(sigmas [R, S], colors [R, S, C], deltas [R, S]) -> (color [R, C],
  weights [R, S])`: the NeRF quadrature.
* `reference`: the same two functions in plain PyTorch, the ground truth of the tests.

Importing this package imports neither taichi nor calls `ti.init`; Taichi starts on the
first kernel call, on the arch of the tensors (see `runtime`).
"""
from . import reference
from .hexplane import hexplane_features
from .volume_render import volume_render

__all__ = ["hexplane_features", "volume_render", "reference"]
