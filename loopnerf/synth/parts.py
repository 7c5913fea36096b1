"""The synthetic scene's building blocks: the world layout, `Part` meshes, the palette.

World frame: +Y up, the ground is the plane y = -0.6, everything lies inside
`SCENE_BOX` = [-1, 1] x [-0.65, 1] x [-1, 1] (world units). The static parts
(`scene.py`) and the moving ones (`motion.py`) are both built from what is here, so
neither needs the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from loopnerf.synth import textures as tx

GROUND_Y = -0.6
SCENE_BOX = np.array([[-1.0, -0.65, -1.0], [1.0, 1.0, 1.0]])
LOOK_AT = np.array([0.0, -0.1, -0.05])
BACKGROUND = (0.62, 0.74, 0.88)  # sky colour of rays that hit nothing (RGB in [0, 1])
BACKDROPS = ("near", "far")
"""What lies behind the scene: 'near', a painted wall just inside the box and a flat sky
(a bounded scene); 'far', no wall but a panorama at infinity (`far_panorama`: hills
and clouds), which a bounded box can only paint as haze (an unbounded scene)."""


def far_panorama(dirs: np.ndarray) -> np.ndarray:
    """RGB [M, 3] in [0, 1] seen along unit directions dirs [M, 3] at infinity: textured
    hills under a horizon that rises and falls with the azimuth, a sky with soft clouds
    above (smooth at a few degrees, so a small capture can resolve it)."""
    d = np.asarray(dirs, np.float64)
    el = np.arcsin(np.clip(d[:, 1], -1.0, 1.0))
    az = np.arctan2(d[:, 2], d[:, 0])
    horizon = 0.12 + 0.07 * np.sin(3 * az + 0.4) + 0.04 * np.sin(7 * az + 1.3)
    sky = np.asarray(BACKGROUND)[None, :] * (1.0 - 0.35 * np.clip(el, 0, None)[:, None])
    cloud = np.clip(np.sin(6 * az + 2 * el) * np.sin(9 * el + 1.0) * 1.6 - 0.5, 0.0, 1.0)
    sky = sky * (1 - 0.6 * cloud[:, None]) + 0.6 * cloud[:, None]
    stripes = 0.5 + 0.5 * np.sin(23 * az) * np.sin(17 * el + 2 * az)
    hills = np.array([0.30, 0.42, 0.27])[None, :] * (0.75 + 0.5 * stripes[:, None])
    hills[:, 0] += 0.15 * (0.5 + 0.5 * np.sin(5 * az))  # warmer patches along the ridge
    out = np.where((el < horizon)[:, None], hills, sky)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
LIGHT_DIR = np.array([-0.45, 0.8, 0.4]) / np.linalg.norm([-0.45, 0.8, 0.4])  # towards the sun
AMBIENT = 0.35  # share of the light that reaches shadowed / back-facing surfaces

# where the moving parts stand (the static parts around them are placed to match)
FLAG_ROOT = np.array([-0.55, 0.3, -0.3])  # pole position (x, z) and the flag's lower edge (y)
FLAG_SIZE = (0.9, 0.5)  # width along +X, height along +Y (world units)
WINDMILL_HUB = np.array([0.45, 0.3, -0.55])  # blades turn in the plane z = -0.55
POOL_CENTER = (0.0, -0.1)  # (x, z)
POOL_SIZE = (0.5, 0.4)



@dataclass
class Part:
    """One triangle mesh of the scene with its texture.

    Attributes:
        name: what it is (for debugging and ground-truth masks).
        vertices: [V, 3] float32 world positions (this frame's, for a moving part).
        faces: [F, 3] uint32 vertex indices.
        tex_coords: [V, 3] float32 material-space position of each vertex (the rest
            pose, world units); the texture is evaluated at the barycentric blend.
        albedo: texture, material-space points [M, 3] -> colours [M, 3] in [0, 1].
        normals: [V, 3] float32 vertex normals for smooth shading, or None for the
            flat face normal. Either side of a triangle may face the camera: the
            renderer flips normals towards the viewer (two-sided shading).
        moving: True for parts rebuilt per frame.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    tex_coords: np.ndarray
    albedo: Callable[[np.ndarray], np.ndarray]
    normals: Optional[np.ndarray] = None
    moving: bool = False


def make_part(name, vertices, faces, albedo, tex_coords=None, normals=None, moving=False) -> Part:
    """A `Part` with arrays cast to the renderer's dtypes; tex_coords default to the vertices."""
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    t = v if tex_coords is None else np.ascontiguousarray(tex_coords, dtype=np.float32)
    n = None if normals is None else np.ascontiguousarray(normals, dtype=np.float32)
    return Part(name, v, np.ascontiguousarray(faces, dtype=np.uint32), t, albedo, n, moving)


def grid_faces(nu: int, nv: int) -> np.ndarray:
    """[2 (nu-1) (nv-1), 3] triangles of a row-major grid of nu x nv vertices (index = i * nv + j)."""
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    a = (i * nv + j).ravel()
    b = a + nv
    return np.concatenate([np.stack([a, b, a + 1], 1), np.stack([a + 1, b, b + 1], 1)])


def grid_normals(p: np.ndarray) -> np.ndarray:
    """Vertex normals [nu * nv, 3] of a grid surface `p` [nu, nv, 3] (d/du x d/dv, unit)."""
    du = np.gradient(p, axis=0)
    dv = np.gradient(p, axis=1)
    n = np.cross(du, dv).reshape(-1, 3)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


class Palette:
    """Seed-dependent colours: a small hue shift per seed so scenes differ but stay pleasant."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 7])
        self.hue_shift = float(rng.uniform(-0.06, 0.06))
        self.noise = tx.ValueNoise(seed)

    def color(self, hue: float, sat: float, val: float) -> np.ndarray:
        """[3] colour with the palette's hue shift applied."""
        return tx.hsv_to_rgb(hue + self.hue_shift, sat, val)

    def shade(self, p: np.ndarray, frequency: float, depth: float = 0.3) -> np.ndarray:
        """[M] multiplicative brightness variation in [1 - depth, 1] from smooth noise."""
        return 1.0 - depth * self.noise(p, frequency)
