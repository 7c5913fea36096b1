"""sRGB <-> linear RGB (IEC 61966-2-1), for the exports: glTF stores vertex colours linear,
the viewer's renders are display sRGB."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Display sRGB in [0, 1] -> linear RGB."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear RGB in [0, 1] -> display sRGB (the inverse of `srgb_to_linear`)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)
