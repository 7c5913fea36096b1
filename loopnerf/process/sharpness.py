"""Blurry-frame rejection: variance of the Laplacian, relative to the neighbouring frames.

Handheld video has motion-blurred frames whenever the hand jerks; their SIFT features
are few and poorly localised, and as training images they smear the field. The sharpness
of a frame is the variance of its (4-neighbour) Laplacian on the grey image (0-255
scale): blur removes high frequencies, so the variance drops. The absolute value
depends on the scene's texture, so a frame is judged against the median of the frames
around it (a window over the extracted frames), which adapts as the camera moves to
plainer or busier views.
"""

from __future__ import annotations

import numpy as np


def laplacian_variance(image: np.ndarray) -> float:
    """Sharpness of one image: the variance of the 4-neighbour Laplacian of its grey levels.

    Args:
        image: [H, W, 3] (or [H, W]) uint8, or float in [0, 1] (scaled to 0-255 so
            values do not depend on the dtype).
    Returns: the variance (grey levels^2); 0 for a constant image.
    """
    img = np.asarray(image)
    g = img.astype(np.float32)
    if not np.issubdtype(img.dtype, np.integer):
        g = g * 255.0
    if g.ndim == 3:
        g = g[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def blurry_frames(sharpness: np.ndarray, ratio: float = 0.5, window: int = 15) -> np.ndarray:
    """Which frames are blurrier than their neighbours.

    Args:
        sharpness: [N] `laplacian_variance` of each extracted frame, in video order.
        ratio: a frame is blurry when its sharpness is below `ratio` times the median
            sharpness of the `window` frames centred on it (itself included).
        window: frames in the neighbourhood (odd; clipped at the ends of the clip).
    Returns: [N] bool, True = blurry (reject). A clip of uniformly plain frames (median
        0) rejects nothing: no frame is blurrier than its neighbours.
    """
    s = np.asarray(sharpness, dtype=np.float64)
    n = len(s)
    half = max(int(window) // 2, 1)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        lo, hi = max(0, i - half), min(n, i + half + 1)
        out[i] = s[i] < ratio * float(np.median(s[lo:hi]))
    return out
