"""Procedural solid textures for the synthetic scene (numpy only).

Every texture maps points in a part's *material space* (`[M, 3]` float, world units
of the part's rest pose) to albedo colours (`[M, 3]` float32 in [0, 1]). Because the
colour depends only on the material-space point, a moving part (the flag cloth, a
windmill blade) carries its pattern along with it, and a static part has the same
colour at the same world point in every frame.

Patterns are chosen for a NeRF at ~100 px: squares and stripes of 0.05-0.2 world
units (a few pixels each at the default framing) plus smooth value noise, so the
images have mid-frequency structure but no pixel-level noise that no field could
learn.
"""

from __future__ import annotations

import numpy as np


class ValueNoise:
    """Smooth 3D value noise in [0, 1]: random values on an integer lattice, blended
    with a C1 smoothstep (trilinear in the smoothed fractions).

    The lattice is a periodic table of `size`^3 random values drawn from `seed`, so the
    noise is deterministic and cheap (no hashing in Python loops).
    """

    def __init__(self, seed: int, size: int = 32) -> None:
        self.size = size
        self.table = np.random.default_rng(seed).random((size, size, size)).astype(np.float32)

    def __call__(self, p: np.ndarray, frequency: float) -> np.ndarray:
        """Noise at points `p` [M, 3] (world units) with `frequency` lattice cells per unit -> [M]."""
        q = np.asarray(p, dtype=np.float64) * frequency + 1000.0  # keep lattice indices positive
        i0 = np.floor(q).astype(np.int64)
        f = (q - i0).astype(np.float32)
        f = f * f * (3.0 - 2.0 * f)
        n = self.size
        flat = self.table.ravel()
        lo, hi = i0 % n, (i0 + 1) % n
        out = np.zeros(len(q), dtype=np.float32)
        for dx in (0, 1):
            wx = f[:, 0] if dx else 1.0 - f[:, 0]
            ix = (hi if dx else lo)[:, 0] * (n * n)
            for dy in (0, 1):
                wxy = wx * (f[:, 1] if dy else 1.0 - f[:, 1])
                ixy = ix + (hi if dy else lo)[:, 1] * n
                out += wxy * (1.0 - f[:, 2]) * flat[ixy + lo[:, 2]]
                out += wxy * f[:, 2] * flat[ixy + hi[:, 2]]
        return out


def mix(a, b, t: np.ndarray) -> np.ndarray:
    """Per-point blend of colours `a` and `b` ([3] or [M, 3]) by weights `t` [M] in [0, 1] -> [M, 3]."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    t = np.asarray(t, dtype=np.float32)[:, None]
    return a * (1.0 - t) + b * t


def checker(p: np.ndarray, cell: float, axes=(0, 1, 2)) -> np.ndarray:
    """[M] 0/1 checkerboard parity of `p` [M, 3] over the given axes with squares of `cell` units."""
    idx = np.floor(np.asarray(p)[:, list(axes)] / cell).astype(np.int64)
    return (idx.sum(axis=1) % 2).astype(np.float32)


def stripes(p: np.ndarray, direction, period: float, duty: float = 0.5) -> np.ndarray:
    """[M] 0/1 stripes across `direction` ([3], need not be unit) every `period` units."""
    d = np.asarray(direction, dtype=np.float64)
    s = (np.asarray(p) @ d) / period
    return ((s - np.floor(s)) < duty).astype(np.float32)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One colour from hue (turns, wraps), saturation and value in [0, 1] -> [3] float32."""
    h = (h % 1.0) * 6.0
    i = int(np.floor(h)) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, dtype=np.float32)
