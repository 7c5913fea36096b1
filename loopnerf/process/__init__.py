"""`loopnerf process VIDEO`: turn a plain (phone) video into a posed nerfstudio capture.

The steps, each in its own module:
- `frames`: decode the video with imageio (every frame or a chosen rate, optional
  downscale) into PNG files for structure-from-motion, remembering each frame's
  original index and time;
- `sharpness`: reject motion-blurred frames (variance of the Laplacian, relative to
  the neighbouring frames);
- `sfm`: pycolmap SIFT features, sequential or exhaustive matching, incremental
  mapping with one camera shared by all frames; the largest reconstruction wins;
- `world_frame`: COLMAP world-to-camera (OpenCV axes) -> camera-to-world (OpenGL
  axes), then a normalised world (look-at point at the origin, +Y up, a fixed scale);
- `summary`: frames registered / extracted, reprojection error, top-view plot;
- `command`: `process_video` (library) and `process` (the CLI sub-command).
"""

from loopnerf.process.command import ProcessResult, process, process_video

__all__ = ["ProcessResult", "process", "process_video"]
