"""Writing and reading videos (mp4 through imageio-ffmpeg, gif through pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from loopnerf.errors import ConfigError


def write_video(path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write uint8 frames [H, W, 3] to `path` (.mp4 or .gif); sizes padded to even for H.264."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ConfigError(f"{path}: no frames to write")
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        h, w = frames[0].shape[:2]
        ph, pw = h + (h % 2), w + (w % 2)
        if (ph, pw) != (h, w):
            frames = [np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") for f in frames]
        iio.imwrite(path, np.stack(frames), extension=".mp4", fps=fps, plugin="FFMPEG", macro_block_size=1)
    elif suffix == ".gif":
        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0, plugin="pillow")
    else:
        raise ConfigError(f"{path}: unsupported video type {suffix!r} (use .mp4 or .gif)")
    return path


def read_video(path) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3]."""
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, index=None))[..., :3]
