"""VideoLoop3D's layered export: RGBA planes at fixed inverse depths from the default camera.

The output is what VideoLoop3D's `scripts/script_export_mesh.py` writes and its
three.js player (limacv/VideoLoopUI) reads:

    geometry.obj     quads, one per plane, `v x y z r g b` with vertex colour red
                     (1, 0, 0) = the face samples `static.png`, green (0, 1, 0) = the
                     face samples the current `dynamic/%04d.png`; `vt` into the atlas
                     (OBJ convention: v = 0 at the bottom); faces ordered far to near
                     so alpha blending in file order composites correctly
    static.png       RGBA atlas of every plane (frame 0), straight (not premultiplied) alpha
    dynamic/%04d.png the RGBA atlas of loop frame k, k = 0 .. F-1 (same layout)
    meta.json        {"fps", "fov" (vertical, degrees), "frame_count", "near", "far",
                     "up", "lookat", "limit"} plus our own keys (plane depths, camera,
                     atlas layout, background)

Geometry is in the default camera's frame with VideoLoop3D's axes (the player puts
its camera at the origin, up (0, -1, 0), looking at +z): x right, y down, z forward
(= OpenCV; our poses are OpenGL, so y and z flip). Plane l sits at depth z_l and spans
the camera's image exactly, so from the reference view texel (u, v) of a plane lies on
pixel (u, v)'s ray.

Each plane holds the radiance of its depth slab (slab borders halfway between planes
in inverse depth): colour and opacity of the volume-rendering integral restricted to
the slab. Compositing the planes front to back over the background reproduces the
direct render from the reference camera exactly, up to 8-bit quantisation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from loopnerf.export.loop_format import BakedLoop

GUTTER = 1  # texels of border replicated around each tile, so linear filtering never reads a neighbour


def depth_range(baked: "BakedLoop") -> tuple[float, float]:
    """(near, far) z-depths of the scene box seen from the default camera, clipped to the
    header's near / far (world units)."""
    c2w = np.asarray(baked.camera["c2w"], dtype=np.float64)
    corners = np.array([[baked.box[i][0], baked.box[j][1], baked.box[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    depth = -(corners - c2w[:3, 3]) @ c2w[:3, 2]  # OpenGL camera looks down -Z
    near = max(float(baked.near), float(depth.min()), 1e-3)
    far = min(float(baked.far), float(depth.max()))
    if not far > near:
        from loopnerf.errors import LoopNeRFError

        raise LoopNeRFError("the scene box is not in front of the default camera; cannot export layers")
    return near, far


def plane_depths(near: float, far: float, count: int) -> np.ndarray:
    """Plane z-depths [L], front to back, uniform in inverse depth from near to far."""
    return 1.0 / np.linspace(1.0 / near, 1.0 / far, count)


def slab_layers(
    baked: "BakedLoop", phase: float, depths: np.ndarray, n_samples: int = 128
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-plane straight RGB [L, H, W, 3] and alpha [L, H, W] of the default camera's
    rays at loop phase p: the volume integral restricted to each depth slab."""
    import torch

    from loopnerf.data.rays import camera_rays
    from loopnerf.export.reference_render import sample_rays

    cam = baked.camera
    H, W = int(cam["height"]), int(cam["width"])
    o, d = (r.reshape(-1, 3) for r in camera_rays(cam["c2w"], cam))
    forward = -torch.tensor(cam["c2w"], dtype=torch.float32)[:3, 2]
    L = len(depths)
    # Slab borders: halfway between planes in inverse depth; the first and last slabs are open.
    inv = 1.0 / np.asarray(depths, dtype=np.float64)
    borders = torch.tensor(1.0 / (0.5 * (inv[1:] + inv[:-1])), dtype=torch.float32)  # [L - 1] increasing depth
    rgbs, alphas = [], []
    chunk = 4096
    for i in range(0, o.shape[0], chunk):
        oo, dd = o[i : i + chunk], d[i : i + chunk]
        with torch.no_grad():
            t, deltas, sigma, rgb = sample_rays(baked, oo, dd, phase, n_samples)
        alpha = 1.0 - torch.exp(-sigma * deltas)  # [R, S]
        z = t * (dd @ forward)[:, None]  # z-depth of each sample
        slab = torch.bucketize(z, borders)  # [R, S] in 0 .. L-1
        prem = torch.zeros(oo.shape[0], L, 3)
        opac = torch.zeros(oo.shape[0], L)
        for l in range(L):
            a = torch.where(slab == l, alpha, torch.zeros_like(alpha))
            trans = torch.cumprod(torch.cat([torch.ones_like(a[:, :1]), 1.0 - a[:, :-1]], dim=1), dim=1)
            w = trans * a
            prem[:, l] = (w[..., None] * rgb).sum(dim=1)
            opac[:, l] = 1.0 - torch.prod(1.0 - a, dim=1)
        rgbs.append(prem / opac.clamp_min(1e-8)[..., None] * (opac > 1e-8)[..., None])
        alphas.append(opac)
    rgb = torch.cat(rgbs).clamp(0, 1).reshape(H, W, L, 3).permute(2, 0, 1, 3)
    alpha = torch.cat(alphas).clamp(0, 1).reshape(H, W, L).permute(2, 0, 1)
    return rgb, alpha


def atlas_layout(count: int, height: int, width: int) -> dict[str, int]:
    """Tiles of (height + 2 GUTTER) x (width + 2 GUTTER) texels on a near-square grid."""
    cols = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / cols))
    th, tw = height + 2 * GUTTER, width + 2 * GUTTER
    return {"cols": cols, "rows": rows, "tile_height": th, "tile_width": tw, "gutter": GUTTER,
            "height": rows * th, "width": cols * tw}


def tile_origin(layout: dict[str, int], index: int) -> tuple[int, int]:
    """(row, column) texel of the top-left image texel of tile `index` (inside the gutter)."""
    r, c = divmod(index, layout["cols"])
    return r * layout["tile_height"] + layout["gutter"], c * layout["tile_width"] + layout["gutter"]


def build_atlas(tiles: np.ndarray, layout: dict[str, int]) -> np.ndarray:
    """tiles [L, H, W, 4] uint8 -> atlas [AH, AW, 4] uint8 with edge-replicated gutters."""
    atlas = np.zeros((layout["height"], layout["width"], 4), np.uint8)
    g = layout["gutter"]
    for l, tile in enumerate(tiles):
        r0, c0 = tile_origin(layout, l)
        padded = np.pad(tile, ((g, g), (g, g), (0, 0)), mode="edge")
        atlas[r0 - g : r0 - g + padded.shape[0], c0 - g : c0 - g + padded.shape[1]] = padded
    return atlas


def _obj_text(depths: np.ndarray, static: list[bool], cam: dict[str, Any], layout: dict[str, int]) -> str:
    W, H = int(cam["width"]), int(cam["height"])
    fx, fy, cx, cy = cam["fx"], cam["fy"], cam["cx"], cam["cy"]
    lines = ["# loopnerf layers export: VideoLoop3D layered format (OpenCV camera frame)"]
    uvs, faces = [], []
    corners = [(0, 0), (W, 0), (0, H), (W, H)]
    for l, z in enumerate(depths):
        colour = "1 0 0" if static[l] else "0 1 0"
        for u, v in corners:
            lines.append(f"v {(u - cx) / fx * z:.7g} {(v - cy) / fy * z:.7g} {z:.7g} {colour}")
        r0, c0 = tile_origin(layout, l)
        for u, v in corners:
            uvs.append(f"vt {(c0 + u) / layout['width']:.8f} {1.0 - (r0 + v) / layout['height']:.8f}")
    # far to near, each quad as (0, 1, 3), (3, 2, 0) like VideoLoop3D
    for l in reversed(range(len(depths))):
        b = 4 * l + 1
        for tri in ((0, 1, 3), (3, 2, 0)):
            faces.append("f " + " ".join(f"{b + k}/{b + k}" for k in tri))
    return "\n".join(lines + uvs + faces) + "\n"


def export_layers(
    baked: "BakedLoop", out_dir: Path, *, planes: int = 32, n_samples: int = 128, progress: bool = True
) -> Path:
    """Write the layered export into out_dir (see module docstring); returns meta.json's path."""
    import imageio.v3 as iio

    out_dir = Path(out_dir)
    cam = baked.camera
    H, W = int(cam["height"]), int(cam["width"])
    near, far = depth_range(baked)
    depths = plane_depths(near, far, planes)
    frames = range(baked.frames)
    iterator: Any = frames
    if progress:
        from rich.progress import track

        iterator = track(frames, description="layers")
    tiles = []
    for k in iterator:
        rgb, alpha = slab_layers(baked, k / baked.frames, depths, n_samples)
        rgba = np.concatenate([rgb.numpy(), alpha.numpy()[..., None]], axis=-1)
        tiles.append(np.round(rgba * 255.0).astype(np.uint8))  # [L, H, W, 4]
    stack = np.stack(tiles)  # [F, L, H, W, 4]
    # A plane is static when no frame differs from frame 0 by more than one 8-bit level.
    change = np.abs(stack.astype(np.int16) - stack[:1].astype(np.int16)).max(axis=(0, 2, 3, 4))
    static = [bool(c <= 1) for c in change]
    layout = atlas_layout(planes, H, W)
    iio.imwrite(out_dir / "static.png", build_atlas(stack[0], layout))
    (out_dir / "dynamic").mkdir(exist_ok=True)
    for k in range(baked.frames):
        iio.imwrite(out_dir / "dynamic" / f"{k:04d}.png", build_atlas(stack[k], layout))
    (out_dir / "geometry.obj").write_text(_obj_text(depths, static, cam, layout))
    # World up in the OpenCV camera frame (y down, z forward).
    c2w = np.asarray(cam["c2w"], dtype=np.float64)
    up_cam = c2w[:3, :3].T @ np.asarray(baked.up, dtype=np.float64)
    up_cv = (up_cam * np.array([1.0, -1.0, -1.0]) / np.linalg.norm(up_cam)).tolist()
    focus = float(1.0 / np.mean(1.0 / depths))
    meta = {
        "fps": float(baked.fps),
        "fov": math.degrees(2.0 * math.atan(cam["cy"] / cam["fy"])),
        "frame_count": int(baked.frames),
        "near": near,
        "far": far,
        "up": up_cv,
        "lookat": [0.0, 0.0, focus],
        "limit": [0.1 * near] * 3,
        "loopnerf": {
            "plane_depths": [float(z) for z in depths],
            "static_planes": static,
            "background": list(baked.background),
            "camera": {k: cam[k] for k in ("c2w", "fx", "fy", "cx", "cy", "width", "height")},
            "atlas": layout,
            "axes": "x right, y down, z forward (default camera frame)",
        },
    }
    path = out_dir / "meta.json"
    path.write_text(json.dumps(meta, indent=2))
    return path
