"""An independent renderer for the synthetic scene: open3d `RaycastingScene` ray casting.

It shares nothing with the project's NeRF renderer on purpose, so that the NeRF is
scored against pictures it did not make itself. Per pixel it casts `supersample`^2
primary rays (a regular sub-pixel grid, box-filtered: mild anti-aliasing), looks up
the hit part's texture at the barycentric blend of its material-space coordinates,
and shades

    colour = albedo * (AMBIENT + (1 - AMBIENT) * max(0, n . l) * lit)

with a directional light `l` (`scene.LIGHT_DIR`), two-sided normals (flipped towards
the viewer) and hard shadows (`lit` = 0 where a shadow ray towards the light hits
anything). Rays that hit nothing take the background colour.

Camera conventions are the project's: camera-to-world, OpenGL axes, the ray of pixel
(u, v) is ((u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1) in camera space.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from loopnerf.data.capture import Intrinsics
from loopnerf.synth.parts import AMBIENT, BACKGROUND, LIGHT_DIR, Part


def pixel_rays(c2w: np.ndarray, k: Intrinsics, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays of every (sub-)pixel.

    Args:
        c2w: [4, 4] camera-to-world, OpenGL axes.
        k: intrinsics (pixels).
        supersample: s; each pixel gets an s x s grid of rays at offsets (i + 0.5) / s.
    Returns:
        origins [H * s, W * s, 3] and unit directions [H * s, W * s, 3], float32,
        row-major over the super-sampled image (sub-row, sub-column order).
    """
    s = int(supersample)
    u = (np.arange(k.width * s) + 0.5) / s  # pixel coordinates of the sub-pixel centres
    v = (np.arange(k.height * s) + 0.5) / s
    uu, vv = np.meshgrid(u, v, indexing="xy")
    d_cam = np.stack([(uu - k.cx) / k.fx, -(vv - k.cy) / k.fy, -np.ones_like(uu)], -1)
    d = d_cam @ np.asarray(c2w)[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(np.asarray(c2w)[:3, 3], d.shape)
    return o.astype(np.float32), d.astype(np.float32)


def render_view(
    parts: Sequence[Part],
    c2w: np.ndarray,
    k: Intrinsics,
    *,
    supersample: int = 2,
    background: Sequence[float] | Callable[[np.ndarray], np.ndarray] = BACKGROUND,
    shadows: bool = True,
) -> np.ndarray:
    """Ray-cast one image of `parts` seen from `c2w` -> [H, W, 3] float32 in [0, 1].

    `background`: the colour of rays that hit nothing, RGB, or a function of their unit
    directions [M, 3] -> RGB [M, 3] (a panorama at infinity, `parts.far_panorama`)."""
    import open3d as o3d
    import open3d.core as o3c

    rc = o3d.t.geometry.RaycastingScene()
    for part in parts:
        rc.add_triangles(o3c.Tensor(part.vertices), o3c.Tensor(part.faces))
    origins, dirs = pixel_rays(c2w, k, supersample)
    hs, ws = origins.shape[:2]
    o = origins.reshape(-1, 3)
    d = dirs.reshape(-1, 3)
    hit = rc.cast_rays(o3c.Tensor(np.concatenate([o, d], 1)))
    t = hit["t_hit"].numpy()
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    bary = hit["primitive_uvs"].numpy()
    face_n = hit["primitive_normals"].numpy()

    color = np.empty((len(o), 3), np.float32)
    valid = np.isfinite(t)
    if callable(background):
        color[:] = 0.0
        miss = ~valid
        color[miss] = background(d[miss])
    else:
        color[:] = np.asarray(background, np.float32)
    albedo = np.zeros((len(o), 3), np.float32)
    normal = face_n.copy()
    for g, part in enumerate(parts):
        sel = np.nonzero(valid & (gid == g))[0]
        if len(sel) == 0:
            continue
        tri = part.faces[prim[sel]]  # [M, 3] vertex indices
        w = np.stack([1.0 - bary[sel, 0] - bary[sel, 1], bary[sel, 0], bary[sel, 1]], 1)[:, :, None]
        tex = (part.tex_coords[tri] * w).sum(1)  # barycentric blend: p = (1-u-v) p0 + u p1 + v p2
        albedo[sel] = part.albedo(tex)
        if part.normals is not None:
            n = (part.normals[tri] * w).sum(1)
            normal[sel] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    idx = np.nonzero(valid)[0]
    n = normal[idx]
    n *= np.where((n * d[idx]).sum(1, keepdims=True) > 0, -1.0, 1.0)  # face the viewer
    light = np.asarray(LIGHT_DIR, np.float32)
    lambert = np.clip(n @ light, 0.0, None)
    if shadows:
        # offset along the normal so a surface does not shadow itself
        p = o[idx] + d[idx] * t[idx, None] + 2e-3 * n
        shadow_rays = np.concatenate([p, np.broadcast_to(light, p.shape)], 1).astype(np.float32)
        blocked = rc.test_occlusions(o3c.Tensor(shadow_rays)).numpy().astype(bool)
        lambert = np.where(blocked, 0.0, lambert)
    shade = AMBIENT + (1.0 - AMBIENT) * lambert
    color[idx] = albedo[idx] * shade[:, None]

    s = int(supersample)
    img = color.reshape(hs // s, s, ws // s, s, 3).mean(axis=(1, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)
