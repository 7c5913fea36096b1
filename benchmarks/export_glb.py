"""The glb / web / layers exports measured where they land: three.js in headless Chromium
against the viewer's own render. One JSON line per figure.

For a baked loop (default: the demo's `runs/demo/run/scene.loop`, with the still
cameras of `segments.json` beside it):
- `export_web`: seconds of `loopnerf export --format web` (fusion + glb + page) and the
  glb's size (MB), vertex and triangle counts;
- `glb_view`, one line per camera (the default camera and 20 degrees to either side
  about the up axis and about the camera's right axis) averaged over every loop frame
  (three.js seeks to k / fps): coverage (share of the pixels the viewer covers, opacity
  >= 0.5, that three.js covers too), PSNR (dB, on the pixels both cover), the worst
  frame of each, the share three.js covers outside the viewer ("extra"), and whether
  three.js showed frame k at every k / fps;
- `gltf_validator`: errors / warnings of the Khronos glTF validator;
- `web_page`: the page opened as a person would: frames seen over 2 s, console errors;
- `layers`: seconds of `--format layers` and the layers composed back at the default
  camera against the viewer's render (PSNR, all pixels, every loop frame; the composite in
  floating point against the viewer's 8-bit image, so the background, which is not on the
  8-bit grid, costs its own rounding where the planes are empty), and the share of 8-bit
  values that differ once the composite is rounded as a display shows it.
With `--bound` (no export), how far one colour per surface point can match the viewer
at the default camera and 20 degrees to either side (yaw), at phase 0:
- `view_dependence`: per camera, the viewer's reference render (192 samples a ray)
  against the same render with every ray's colour basis taken at the default camera's
  axis instead of the ray's own direction (PSNR, covered pixels): how much of what a
  view shows is its direction rather than its surfaces;
- `one_colour_bound`: the default camera's covered pixels as surface points (its
  expected depth), kept where the -20 and +20 degree views show them too (their own
  expected depth within max(2 voxels, 2 %) of the point's); for those, PSNR of each
  view's colour against the mean of the three (the best one colour per point can do
  for the three views together, on the part of the image where they agree on depth).
The viewer renders at the .loop camera's size (intrinsics_for its width x height), the
engine at the same pinhole camera, so the pixels correspond one to one.

Usage:
    .venv/bin/python benchmarks/export_glb.py [--loop runs/demo/run/scene.loop] [--out DIR] [--colors projection] [--figure docs/export_glb_threejs.png]
    .venv/bin/python benchmarks/export_glb.py --bound [--loop ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAMERAS = (("default", 0.0, "yaw"), ("yaw-20", -20.0, "yaw"), ("yaw+20", 20.0, "yaw"),
           ("pitch-20", -20.0, "pitch"), ("pitch+20", 20.0, "pitch"))


def _emit(line: dict, log) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if log is not None:
        log.append(line)


def measure(loop_path: Path, out_dir: Path, *, quiet: bool = True, with_layers: bool = True, log: list | None = None,
            export_options: dict | None = None, figure: Path | None = None) -> dict:
    """Export `loop_path` as web (and layers) into out_dir and measure (module docstring).
    Returns {"glb_mb", "views": [per-camera dicts], ...}; prints the JSON lines.
    `figure`: also write a PNG of loop frame 0, the viewer (left) beside three.js (right),
    one row per yaw camera (default, -20, +20 degrees)."""
    from loopnerf.export.browser import compare_to_viewer, engine_views, play_in_browser, render_in_browser, validate_glb
    from loopnerf.export.command import export
    from loopnerf.export.loop_format import load_loop
    from loopnerf.export.tsdf import around_default
    from loopnerf.viewer import Renderer
    from loopnerf.viewer.renderer import EXPORT_BACKEND

    baked = load_loop(loop_path)
    out_dir = Path(out_dir)
    web = out_dir / "web"
    t0 = time.perf_counter()
    export(loop_path, "web", web, quiet=quiet, overwrite=True, **(export_options or {}))
    seconds = time.perf_counter() - t0
    stats = json.loads((web / "scene.glb.json").read_text())
    glb_mb = (web / "scene.glb").stat().st_size / 1e6
    from loopnerf.export.glb import read_glb_json

    gltf = read_glb_json(web / "scene.glb")
    n_tri = sum(gltf["accessors"][p["indices"]]["count"] // 3 for m in gltf["meshes"] for p in m["primitives"])
    _emit({"figure": "export_web", "loop": str(loop_path), "seconds": round(seconds, 2), "glb_mb": round(glb_mb, 3),
           "static_vertices": stats["static_vertices"], "moving_vertices_per_frame_mean": float(np.mean(stats["frame_vertices"])),
           "triangles": n_tri, "fusion_cameras": stats["cameras"], "voxel": stats["voxel"],
           "render_seconds": round(stats["render_seconds"], 2)}, log)

    cam = baked.camera
    W, H = int(cam["width"]), int(cam["height"])
    renderer = Renderer(baked, W, H, backend=EXPORT_BACKEND)
    intr = renderer.intrinsics_for(W, H)
    F = baked.frames
    cams = [around_default(baked, deg, stats["focus_depth"], axis=axis) for _, deg, axis in CAMERAS]
    views = engine_views(baked, [c for c in cams for _ in range(F)], intr, [k / baked.fps for _ in cams for k in range(F)])
    t0 = time.perf_counter()
    results, info = render_in_browser(web, views)
    browser_seconds = time.perf_counter() - t0
    per_camera = []
    rows = []
    for ci, (name, deg, axis) in enumerate(CAMERAS):
        figs = []
        for k in range(F):
            res = results[ci * F + k]
            rgb, _, opacity = renderer.render_phase_with_opacity(cams[ci].astype(np.float32), k / F, intrinsics=intr)
            figs.append(dict(compare_to_viewer(res["rgba"], rgb, opacity), shown_ok=res["frame"] == k))
            if k == 0 and axis == "yaw":
                rows.append((rgb, res["rgba"]))
        line = {
            "figure": "glb_view", "camera": name, "degrees": deg, "axis": axis, "size": [W, H],
            "coverage": float(np.mean([f["coverage"] for f in figs])),
            "coverage_worst_frame": float(np.min([f["coverage"] for f in figs])),
            "psnr": float(np.mean([f["psnr"] for f in figs])),
            "psnr_worst_frame": float(np.min([f["psnr"] for f in figs])),
            "viewer_covers": float(np.mean([f["viewer_covers"] for f in figs])),
            "engine_covers": float(np.mean([f["engine_covers"] for f in figs])),
            "extra": float(np.mean([f["extra"] for f in figs])),
            "frame_k_at_k_over_fps": all(f["shown_ok"] for f in figs),
        }
        per_camera.append(line)
        _emit(line, log)
    _emit({"figure": "browser", "gl_renderer": info.get("gl_renderer"), "errors": info.get("errors"),
           "blocked": info.get("blocked"), "views": len(views), "seconds": round(browser_seconds, 2)}, log)
    report = validate_glb(web / "scene.glb")
    _emit({"figure": "gltf_validator", "errors": report["issues"]["numErrors"], "warnings": report["issues"]["numWarnings"],
           "infos": report["issues"]["numInfos"]}, log)
    play = play_in_browser(web, width=320, height=240, samples=9, interval_ms=250)
    frames_seen = [s["frame"] for s in play.get("samples", [])]
    _emit({"figure": "web_page", "frames_seen": frames_seen, "distinct": len(set(frames_seen)),
           "errors": play.get("errors"), "blocked": play.get("blocked")}, log)
    if play.get("samples"):
        import imageio.v3 as iio

        iio.imwrite(out_dir / "web_page.png", play["samples"][0]["image"])
    if figure is not None:
        write_figure(Path(figure), rows, baked.background)
    out = {"glb_mb": glb_mb, "export_seconds": seconds, "views": per_camera}
    if with_layers:
        out["layers"] = measure_layers(loop_path, out_dir / "layers", renderer, log=log)
    return out


def write_figure(path: Path, rows: list, background, *, scale: int = 3, gap: int = 4) -> None:
    """PNG grid: per row the viewer's uint8 [H, W, 3] (left) and three.js's RGBA [H, W, 4]
    over the loop's background (right), enlarged `scale` times (nearest)."""
    import imageio.v3 as iio

    bg = np.asarray(background, dtype=np.float64)
    tiles = []
    for viewer_rgb, rgba in rows:
        a = rgba[..., 3:4].astype(np.float64) / 255.0
        engine = np.round((rgba[..., :3].astype(np.float64) / 255.0 * a + (1.0 - a) * bg) * 255.0).astype(np.uint8)
        pad = np.full((viewer_rgb.shape[0], gap, 3), 255, np.uint8)
        tiles.append(np.concatenate([viewer_rgb, pad, engine], axis=1))
    pad = np.full((gap, tiles[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([t for row in tiles for t in (row, pad)][:-1], axis=0)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, grid)


def measure_layers(loop_path: Path, out_dir: Path, renderer, *, log: list | None = None) -> dict:
    """Seconds of `--format layers` and the layers composed back at the default camera
    against the viewer's render (PSNR over all pixels, per loop frame)."""
    import imageio.v3 as iio

    from loopnerf.export.command import export
    from loopnerf.export.layers import tile_origin

    t0 = time.perf_counter()
    export(loop_path, "layers", out_dir, quiet=True, overwrite=True)
    seconds = time.perf_counter() - t0
    meta = json.loads((out_dir / "meta.json").read_text())
    lm = meta["loopnerf"]
    layout = lm["atlas"]
    cam = lm["camera"]
    H, W = int(cam["height"]), int(cam["width"])
    bg = np.asarray(lm["background"], dtype=np.float64)
    static_atlas = iio.imread(out_dir / "static.png").astype(np.float64) / 255.0
    psnrs, shown_diff = [], []
    for k in range(meta["frame_count"]):
        dyn = iio.imread(out_dir / "dynamic" / f"{k:04d}.png").astype(np.float64) / 255.0
        rgb = np.zeros((H, W, 3))
        trans = np.ones((H, W, 1))
        for l in range(len(lm["plane_depths"])):  # front to back
            r0, c0 = tile_origin(layout, l)
            tile = (static_atlas if lm["static_planes"][l] else dyn)[r0 : r0 + H, c0 : c0 + W]
            a = tile[..., 3:4]
            rgb += trans * a * tile[..., :3]
            trans *= 1.0 - a
        composed = rgb + trans * bg
        ref, _, _ = renderer.render_phase_with_opacity(renderer.default_c2w(), k / meta["frame_count"])
        mse = float(np.mean((composed - ref / 255.0) ** 2))
        psnrs.append(-10.0 * math.log10(max(mse, 1e-20)))
        shown = np.round(np.clip(composed, 0.0, 1.0) * 255.0)  # what an 8-bit display shows
        shown_diff.append(float(np.mean(shown != ref)))
    line = {"figure": "layers", "seconds": round(seconds, 2), "render_seconds": round(lm["render_seconds"], 2),
            "planes": len(lm["plane_depths"]), "psnr_vs_viewer_mean": float(np.mean(psnrs)),
            "psnr_vs_viewer_min": float(np.min(psnrs)), "psnr_vs_viewer_max": float(np.max(psnrs)),
            "displayed_values_differing": float(np.mean(shown_diff))}
    _emit(line, log)
    return line


def measure_bound(loop_path: Path, *, log: list | None = None) -> dict:
    """The `--bound` figures (module docstring). Returns {"view_dependence": line,
    "one_colour_bound": line}."""
    import torch

    from loopnerf.export.loop_format import load_loop
    from loopnerf.export.reference_render import direction_basis, render_camera
    from loopnerf.export.tsdf import around_default, covered_depth, focus_depth, ray_z_factor
    from loopnerf.viewer import Renderer
    from loopnerf.viewer.renderer import EXPORT_BACKEND

    baked = load_loop(loop_path)
    cam = baked.camera
    W, H = int(cam["width"]), int(cam["height"])
    renderer = Renderer(baked, W, H, backend=EXPORT_BACKEND)
    intr = renderer.intrinsics_for(W, H)
    focus = focus_depth(renderer, baked, intr, 0.5)
    voxel = focus / float(cam["fy"])
    names = ("default", "yaw-20", "yaw+20")
    cams = [around_default(baked, d, focus) for d in (0.0, -20.0, 20.0)]
    axis = torch.tensor(-np.asarray(cam["c2w"], dtype=np.float64)[:3, 2], dtype=torch.float32)

    def fixed_basis(dirs):
        return direction_basis(baked, axis.expand_as(dirs).contiguous())

    def psnr(a, b):
        return -10.0 * math.log10(max(float(np.mean((a - b) ** 2)), 1e-12))

    dep = {}
    for name, c2w in zip(names, cams):
        own = render_camera(baked, c2w, intr, 0.0)
        fixed = render_camera(baked, c2w, intr, 0.0, basis_fn=fixed_basis)
        m = own["acc"].numpy() >= 0.5
        dep[name] = psnr(own["rgb"].numpy()[m], fixed["rgb"].numpy()[m])
    line1 = {"figure": "view_dependence", **{f"psnr_{k}": round(v, 2) for k, v in dep.items()}}
    _emit(line1, log)

    zf = ray_z_factor(intr)
    u = (np.arange(W) + 0.5 - intr.cx) / intr.fx
    v = (np.arange(H) + 0.5 - intr.cy) / intr.fy
    renders = []
    for c2w in cams:
        rgb, depth, opacity = renderer.render_phase_with_opacity(c2w.astype(np.float32), 0.0, intrinsics=intr)
        renders.append((rgb.astype(np.float64) / 255.0, covered_depth(depth, opacity, baked.far) * zf, opacity >= 0.5))
    rgb0, z0, ok0 = renders[0]
    ok0 = ok0 & np.isfinite(z0)
    z0 = np.where(ok0, z0, 1.0)
    pc = np.stack(np.broadcast_arrays(u[None, :] * z0, -v[:, None] * z0, -z0), axis=-1)  # OpenGL camera
    X = pc @ cams[0][:3, :3].T + cams[0][:3, 3]
    colours, seen = [rgb0], ok0.copy()
    for c2w, (rgb, z, ok) in zip(cams[1:], renders[1:]):
        q = (X - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera (OpenGL)
        zc = -q[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            pu = intr.fx * q[..., 0] / zc + intr.cx
            pv = -intr.fy * q[..., 1] / zc + intr.cy
        inside = (zc > 0) & (pu >= 0) & (pu < W) & (pv >= 0) & (pv < H)
        iu = np.clip(np.floor(np.nan_to_num(pu)).astype(int), 0, W - 1)
        iv = np.clip(np.floor(np.nan_to_num(pv)).astype(int), 0, H - 1)
        seen &= inside & ok[iv, iu] & (np.abs(z[iv, iu] - zc) <= np.maximum(2.0 * voxel, 0.02 * zc))
        colours.append(rgb[iv, iu])
    mean = sum(colours) / len(colours)
    line2 = {"figure": "one_colour_bound", "share_of_default_pixels": round(float(seen.sum() / ok0.sum()), 3),
             **{f"psnr_{k}": round(psnr(c[seen], mean[seen]), 2) for k, c in zip(names, colours)}}
    _emit(line2, log)
    return {"view_dependence": line1, "one_colour_bound": line2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", type=Path, default=REPO / "runs" / "demo" / "run" / "scene.loop")
    parser.add_argument("--out", type=Path, default=None, help="keep the exports here (default: a temporary folder)")
    parser.add_argument("--no-layers", action="store_true")
    parser.add_argument("--fuse-height", type=int, default=None, help="as `loopnerf export --fuse-height`")
    parser.add_argument("--voxel", type=float, default=None, help="as `loopnerf export --voxel`")
    parser.add_argument("--subdivide", type=int, default=None, help="as `loopnerf export --subdivide`")
    parser.add_argument("--colors", choices=("splat", "projection"), default=None, help="as `loopnerf export --colors`")
    parser.add_argument("--figure", type=Path, default=None,
                        help="write a PNG of loop frame 0: the viewer beside three.js at the default camera and +-20 degrees")
    parser.add_argument("--bound", action="store_true",
                        help="only how far one colour per surface point can match the viewer (no export)")
    args = parser.parse_args(argv)
    options = {k: v for k, v in (("fuse_height", args.fuse_height), ("voxel", args.voxel), ("subdivide", args.subdivide),
                                 ("colors", args.colors)) if v is not None}
    if not args.loop.exists():
        print(f"{args.loop}: not found (run `loopnerf demo` first, or pass --loop)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    if args.bound:
        measure_bound(args.loop)
        return 0
    if args.out is not None:
        measure(args.loop, args.out, with_layers=not args.no_layers, export_options=options, figure=args.figure)
    else:
        with tempfile.TemporaryDirectory(prefix="loopnerf-export-bench-") as tmp:
            measure(args.loop, Path(tmp) / "out", with_layers=not args.no_layers, export_options=options, figure=args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
