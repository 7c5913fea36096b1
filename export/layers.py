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

The planes are filled from the viewer's own renderer (`loopnerf.viewer.Renderer`, the
image a user sees), one render per loop frame at the default camera: each pixel's
colour and opacity go onto the plane nearest (in inverse depth) to the expected depth
of what the pixel shows, sum(w_i t_i) / opacity, as straight colour c = (rgb - (1 -
opacity) background) / opacity with alpha = opacity. Every other plane is transparent
there, so compositing the planes front to back over the background gives back the
viewer's render at the reference camera up to 8-bit rounding of partly transparent
pixels (kept to a fraction of a level by choosing alpha and colour together,
`quantize_over`). (What a pixel hides behind its visible surface is not stored: a view that moves
far from the reference camera shows the background in the gaps.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
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


def quantize_over(rgb: np.ndarray, alpha: np.ndarray, background, search: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """8-bit straight alpha and colour [H, W] uint8, [H, W, 3] uint8 whose composite
    over `background`, a c + (1 - a) bg, is closest to the target `rgb` (uint8 [H, W, 3]).

    Rounding opacity and colour separately leaves up to half a level of error in each,
    about 60 dB over a hazy image; trying the alpha levels within `search` of
    round(255 alpha) (nearest first) and, for each, the colour that best gives the target,
    keeps the composite within a fraction of a level (alpha moves by <= search / 255).
    A pixel stays fully transparent only where it is empty: round(255 alpha) = 0 and the
    target is the background's own 8-bit colour. Faint haze the viewer still shows (a
    level off the background at alpha < 0.5 / 255) gets the smallest alpha that draws it:
    on the demo loop those pixels were 12 % of the image and the largest error left
    (search 4 with them forced empty: 65.5 dB; search 4 / 8 / 16 without: 67.5 / 69.6 /
    72.2 dB against the viewer)."""
    target = rgb.astype(np.float64) / 255.0
    bg = np.asarray(background, dtype=np.float64)
    base = np.round(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.int64)
    best_err = np.full(alpha.shape, np.inf)
    best_a = base.copy()
    best_c = np.zeros(rgb.shape, np.int64)
    for j in sorted(range(-search, search + 1), key=abs):
        a8 = np.clip(base + j, 0, 255)
        a = (a8 / 255.0)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(a > 0, (target - (1.0 - a) * bg) / a, 0.0)
        c8 = np.clip(np.round(c * 255.0), 0, 255).astype(np.int64)
        err = np.sum((a * c8 / 255.0 + (1.0 - a) * bg - target) ** 2, axis=-1)
        better = err < best_err - 1e-15
        best_err = np.where(better, err, best_err)
        best_a = np.where(better, a8, best_a)
        best_c = np.where(better[..., None], c8, best_c)
    bg8 = np.round(np.clip(bg, 0.0, 1.0) * 255.0).astype(np.int64)
    empty = (base == 0) & np.all(rgb.astype(np.int64) == bg8, axis=-1)  # nothing there
    best_a[empty] = 0
    best_c[best_a == 0] = 0
    return best_a.astype(np.uint8), best_c.astype(np.uint8)


def frame_layers(
    rgb: np.ndarray, depth: np.ndarray, opacity: np.ndarray, depths: np.ndarray, intr, background, far: float
) -> np.ndarray:
    """One loop frame's planes from the viewer's render at the reference camera.

    Args:
        rgb uint8 [H, W, 3], depth float [H, W] (the viewer's: sum(w_i t_i) + (1 -
            opacity) far, along unit rays), opacity float [H, W];
        depths: plane z-depths [L], front to back; intr: the render's intrinsics;
        background: RGB in [0, 1]; far: the .loop's far distance.
    Returns RGBA uint8 [L, H, W, 4], straight (not premultiplied) alpha."""
    from loopnerf.export.tsdf import covered_depth, ray_z_factor

    H, W = opacity.shape
    L = len(depths)
    alpha = np.clip(opacity.astype(np.float64), 0.0, 1.0)
    z = covered_depth(depth, opacity, far).astype(np.float64) * ray_z_factor(intr)
    inv = 1.0 / np.asarray(depths, dtype=np.float64)  # decreasing
    with np.errstate(divide="ignore", invalid="ignore"):
        iz = np.where(np.isfinite(z) & (z > 0), 1.0 / z, inv[-1])
    plane = np.clip(np.rint((iz - inv[0]) / (inv[-1] - inv[0]) * (L - 1)), 0, L - 1).astype(np.int64)
    a8, c8 = quantize_over(rgb, alpha, background)
    out = np.zeros((L, H, W, 4), np.uint8)
    rows, cols = np.nonzero(a8 > 0)
    out[plane[rows, cols], rows, cols, :3] = c8[rows, cols]
    out[plane[rows, cols], rows, cols, 3] = a8[rows, cols]
    return out


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
    baked: "BakedLoop", out_dir: Path, *, planes: int = 32, progress: bool = True, renderer=None
) -> Path:
    """Write the layered export into out_dir (see module docstring); returns meta.json's path.

    `renderer`: a `loopnerf.viewer.Renderer` of `baked` to reuse (one is made if None).
    The figures (render and write seconds) go to `meta.json`'s "loopnerf" entry."""
    import time

    import imageio.v3 as iio

    from loopnerf.viewer import Renderer
    from loopnerf.viewer.renderer import EXPORT_BACKEND

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    cam = baked.camera
    H, W = int(cam["height"]), int(cam["width"])
    near, far = depth_range(baked)
    depths = plane_depths(near, far, planes)
    if renderer is None:
        renderer = Renderer(baked, W, H, backend=EXPORT_BACKEND)
    intr = renderer.intrinsics_for(W, H)
    c2w = renderer.default_c2w()
    frames = range(baked.frames)
    iterator: Any = frames
    if progress:
        from rich.progress import track

        iterator = track(frames, description="layers")
    tiles = []
    t_render = 0.0
    for k in iterator:
        t0 = time.perf_counter()
        rgb, depth, opacity = renderer.render_phase_with_opacity(c2w, k / baked.frames, intrinsics=intr)
        t_render += time.perf_counter() - t0
        tiles.append(frame_layers(rgb, depth, opacity, depths, intr, baked.background, float(baked.far)))
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
            "source": "loopnerf.viewer.Renderer, one render per loop frame at the default camera",
            "render_seconds": t_render,
            "seconds": time.perf_counter() - t_start,
        },
    }
    path = out_dir / "meta.json"
    path.write_text(json.dumps(meta, indent=2))
    return path
