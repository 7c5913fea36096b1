"""LoopNeRF: 3D video textures from a monocular video.

Importing this package is cheap: torch, taichi and open3d load only when a
sub-module that needs them is imported.
"""

__version__ = "0.1.0"

from loopnerf.errors import LoopNeRFError

__all__ = ["LoopNeRFError", "__version__"]
