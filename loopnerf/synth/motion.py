"""The moving parts of the synthetic scene, as functions of the loop phase.

Each mover maps a loop phase `phase` in [0, 1) (see `SyntheticScene.phase`: frame k
has phase (k mod P) / P) and the scene's `Palette` to a list of `Part`s whose
vertices are that instant's world positions. Every displacement is a sum of terms
periodic in `phase` with period 1 (whole-number multiples of 2 pi phase), so the
motion repeats exactly every P frames; the textures are evaluated in material space
(the rest pose), so patterns travel with the moving surfaces.

- `flag`: a 0.9 x 0.5 cloth on a pole, displaced along Z by a travelling wave
  (wavelength 0.5, amplitude growing linearly from 0 at the pole to 0.09 at the
  free edge, plus a second harmonic), rebuilt per frame on a 36 x 20 grid.
- `windmill`: four identical blades turning about a horizontal axis by one blade
  spacing (90 degrees) per period, so the picture repeats after P frames.
- `water`: a 0.5 x 0.4 pool surface with circular ripples from two sources
  (wavelength 0.15, amplitude 0.006) whose tile texture is shifted by the surface
  slope (a cheap refraction look), so the ripples show in colour, not just shading.
"""

from __future__ import annotations

import numpy as np

from loopnerf.synth import textures as tx
from loopnerf.synth.scene import GROUND_Y, Palette, Part, grid_faces, grid_normals, make_part

TWO_PI = 2.0 * np.pi

FLAG_ROOT = np.array([-0.55, 0.3, -0.3])  # pole position (x, z) and the flag's lower edge (y)
FLAG_SIZE = (0.9, 0.5)  # width along +X, height along +Y (world units)
WINDMILL_HUB = np.array([0.45, 0.3, -0.55])  # blades turn in the plane z = -0.55
POOL_CENTER = (0.0, -0.1)  # (x, z)
POOL_SIZE = (0.5, 0.4)


def flag(phase: float, pal: Palette) -> list[Part]:
    """The waving flag at loop phase `phase` in [0, 1)."""
    width, height = FLAG_SIZE
    nu, nv = 36, 20
    s, h = np.meshgrid(np.linspace(0.0, width, nu), np.linspace(0.0, height, nv), indexing="ij")
    wavelength, amp = 0.5, 0.09
    grow = s / width  # the edge on the pole stays put
    arg = TWO_PI * (s / wavelength + 0.15 * h / height - phase)
    dz = amp * grow * (np.sin(arg) + 0.3 * np.sin(2.0 * arg + 1.0))
    # the cloth shortens a little where it bends, so it does not look stretched
    dx = -0.25 * amp * grow * (1.0 - np.cos(2.0 * arg))
    dy = -0.02 * grow**2 * (1.0 + 0.5 * np.sin(arg + 0.5))  # slight droop of the free corner
    p = np.stack([FLAG_ROOT[0] + s + dx, FLAG_ROOT[1] + h + dy, FLAG_ROOT[2] + dz], -1)
    tex = np.stack([s, h, np.zeros_like(s)], -1)
    bands = np.stack([pal.color(0.62, 0.8, 0.7), pal.color(0.0, 0.0, 0.95), pal.color(0.98, 0.8, 0.8)])
    emblem = pal.color(0.14, 0.9, 0.95)

    def albedo(q):
        band = np.clip((q[:, 0] / width * 3.0).astype(np.int64), 0, 2)
        c = bands[band]
        stripe = tx.stripes(q, (0.0, 1.0, 0.0), height / 5.0, duty=0.5) * (band == 1)
        c = tx.mix(c, bands[0] * 0.8 + 0.2, stripe * 0.6)
        r = np.hypot(q[:, 0] - width / 2, q[:, 1] - height / 2)
        ring = ((r < 0.11) & (r > 0.06)).astype(np.float32)
        return tx.mix(c, emblem, ring)

    return [make_part("flag", p.reshape(-1, 3), grid_faces(nu, nv), albedo, tex.reshape(-1, 3), grid_normals(p), moving=True)]


def windmill(phase: float, pal: Palette, blades: int = 4) -> list[Part]:
    """The windmill's blades at loop phase `phase`: turned by phase * 360 / blades degrees."""
    r0, r1 = 0.05, 0.28  # blade span along its radius (tips stay clear of the backdrop)
    nr = 8
    r = np.linspace(r0, r1, nr)
    half_w = 0.02 + 0.04 * (r - r0) / (r1 - r0)  # blades widen towards the tip
    # one blade in its own frame: radius along +X, width along +Y, a slight pitch in Z
    pitch = np.deg2rad(15.0)
    quad = []
    for side in (-1.0, 1.0):
        w = side * half_w
        quad.append(np.stack([r, w * np.cos(pitch), w * np.sin(pitch)], -1))
    blade = np.stack(quad, 1)  # [nr, 2, 3]
    tex_blade = np.stack([r[:, None].repeat(2, 1), np.stack([-half_w, half_w], 1), np.zeros((nr, 2))], -1)
    faces = grid_faces(nr, 2)
    red, white = pal.color(0.0, 0.7, 0.8), np.array([0.93, 0.92, 0.88], np.float32)

    def albedo(q):
        return tx.mix(red, white, tx.stripes(q, (1.0, 0.0, 0.0), 0.08, duty=0.5))

    verts, texs, fs = [], [], []
    base = TWO_PI * phase / blades
    for b in range(blades):
        a = base + TWO_PI * b / blades
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        verts.append(blade.reshape(-1, 3) @ rot.T + WINDMILL_HUB)
        texs.append(tex_blade.reshape(-1, 3))  # identical material space: blades look alike
        fs.append(faces + b * 2 * nr)
    return [make_part("blades", np.concatenate(verts), np.concatenate(fs), albedo, np.concatenate(texs), moving=True)]


def water(phase: float, pal: Palette) -> list[Part]:
    """The rippling pool surface at loop phase `phase`."""
    (cx, cz), (sx, sz) = POOL_CENTER, POOL_SIZE
    nx, nz = 40, 32
    x, z = np.meshgrid(np.linspace(cx - sx / 2, cx + sx / 2, nx), np.linspace(cz - sz / 2, cz + sz / 2, nz), indexing="ij")
    wavelength, amp = 0.15, 0.006
    height = np.zeros_like(x)
    grad_x = np.zeros_like(x)
    grad_z = np.zeros_like(x)
    for (ox, oz), weight, harmonic in [((cx - 0.1, cz - 0.05), 1.0, 1), ((cx + 0.15, cz + 0.1), 0.6, 2)]:
        dxs, dzs = x - ox, z - oz
        rr = np.hypot(dxs, dzs) + 1e-9
        arg = TWO_PI * (rr / wavelength * harmonic - harmonic * phase)
        height += weight * amp * np.sin(arg)
        slope = weight * amp * np.cos(arg) * TWO_PI * harmonic / wavelength
        grad_x += slope * dxs / rr
        grad_z += slope * dzs / rr
    # fade the ripples to zero at the kerb so the surface meets it
    fade = np.sin(np.pi * (x - (cx - sx / 2)) / sx) * np.sin(np.pi * (z - (cz - sz / 2)) / sz)
    y = GROUND_Y + 0.012 + fade * height
    p = np.stack([x, y, z], -1)
    shift = 0.12  # refraction-like offset of the tiles seen through the water, per unit slope
    tex = np.stack([x + shift * fade * grad_x, np.zeros_like(x), z + shift * fade * grad_z], -1)
    deep, light = pal.color(0.55, 0.8, 0.55), pal.color(0.5, 0.45, 0.9)

    def albedo(q):
        c = tx.mix(deep, light, tx.checker(q, 0.06, axes=(0, 2)) * 0.7)
        return c * pal.shade(q, 10.0, 0.2)[:, None]

    return [make_part("water", p.reshape(-1, 3), grid_faces(nx, nz), albedo, tex.reshape(-1, 3), grid_normals(p), moving=True)]
